// S3 object operations. See client.hpp.
#include "core/s3/client.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <utility>

#include "core/crypto.hpp"
#include "core/s3/xml.hpp"

namespace reportstore::s3 {

namespace {

// SQLSTATEs not in error.hpp's list.
constexpr const char *kSqlUnableToConnect = "08001";   // sqlclient_unable_to_establish_sqlconnection
constexpr const char *kSqlInvalidAuthorization = "28000"; // invalid_authorization_specification
constexpr const char *kSqlUndefinedFile = "58P01";     // undefined_file
constexpr const char *kSqlProgramLimitExceeded = "54000";

constexpr std::uint64_t kMaxGetBytes = 0x3fffffff; // PostgreSQL's MaxAllocSize
constexpr std::uint64_t kMaxListBytes = 32u << 20;     // ParseListObjectsV2's bound
constexpr std::uint64_t kMaxLifecycleBytes = 4u << 20; // ParseLifecycleRules' bound
constexpr std::size_t kMaxServerText = 300;       // bytes of a server message we repeat

std::string Lower(std::string_view s) {
	std::string out(s);
	for (char &c : out)
		c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	return out;
}

bool IsHex32(std::string_view s) {
	if (s.size() != 32)
		return false;
	return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

std::string StripQuotes(std::string s) {
	if (s.size() >= 2 && s.front() == '"' && s.back() == '"')
		return s.substr(1, s.size() - 2);
	return s;
}

// Server-provided text: printable ASCII only, bounded.
std::string Clean(std::string_view s) {
	std::string out;
	for (char c : s) {
		if (out.size() >= kMaxServerText) {
			out += "...";
			break;
		}
		const auto u = static_cast<unsigned char>(c);
		out += (u >= 0x20 && u < 0x7f) ? c : (u == '\n' || u == '\r' || u == '\t') ? ' ' : '?';
	}
	return out;
}

std::string ObjectName(const std::string &bucket, const std::string &key) {
	return "s3://" + bucket + "/" + key;
}

bool ValidHeaderToken(std::string_view s) {
	if (s.empty())
		return false;
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if (!(std::isalnum(u) || std::string_view("!#$&'*+-.^_`|~").find(c) != std::string_view::npos))
			return false;
	}
	return true;
}

bool ValidHeaderValue(std::string_view s) {
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if (u < 0x20 && u != '\t')
			return false;
		if (u == 0x7f)
			return false;
	}
	return true;
}

bool ParseUint(const std::string &s, std::uint64_t *out) {
	if (s.empty() || s.size() > 19)
		return false;
	std::uint64_t v = 0;
	for (char c : s) {
		if (c < '0' || c > '9')
			return false;
		v = v * 10 + static_cast<std::uint64_t>(c - '0');
	}
	*out = v;
	return true;
}

ObjectInfo InfoFromHeaders(const http::Response &resp) {
	ObjectInfo info;
	for (const auto &h : resp.headers) {
		const std::string &name = h.first;
		if (name == "content-length")
			ParseUint(h.second, &info.size);
		else if (name == "etag")
			info.etag = StripQuotes(h.second);
		else if (name == "x-amz-version-id")
			info.version_id = h.second;
		else if (name == "content-type")
			info.content_type = h.second;
		else if (name == "content-encoding")
			info.content_encoding = h.second;
		else if (name.size() > 11 && name.compare(0, 11, "x-amz-meta-") == 0)
			info.metadata.emplace_back(name.substr(11), h.second);
	}
	return info;
}

Error IntegrityError(const std::string &what, const std::string &bucket, const std::string &key,
                     const std::string &detail) {
	return Error(ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
	             "integrity check failed for " + what + " object \"" + ObjectName(bucket, key) + "\"", detail,
	             "The bytes were not accepted. Retry the operation; if it keeps failing, check the S3 server and "
	             "anything between it and the database.");
}

struct CodeClass {
	const char *code;
	ErrorKind kind;
	const char *sqlstate;
	const char *hint;
};

constexpr const char *kCredentialHint = "Check reportstore.access_key_id and reportstore.secret_access_key.";

const CodeClass kCodes[] = {
    {"InvalidAccessKeyId", ErrorKind::kSystemic, kSqlInvalidAuthorization, kCredentialHint},
    {"SignatureDoesNotMatch", ErrorKind::kSystemic, kSqlInvalidAuthorization, kCredentialHint},
    {"ExpiredToken", ErrorKind::kSystemic, kSqlInvalidAuthorization,
     "The temporary credentials have expired; refresh the session token and check reportstore.access_key_id and "
     "reportstore.secret_access_key."},
    {"InvalidToken", ErrorKind::kSystemic, kSqlInvalidAuthorization,
     "The session token is invalid; check the temporary credentials, reportstore.access_key_id and "
     "reportstore.secret_access_key."},
    {"TokenRefreshRequired", ErrorKind::kSystemic, kSqlInvalidAuthorization,
     "The session token must be refreshed."},
    {"AccessDenied", ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege,
     "Check that the credentials in reportstore.access_key_id are allowed to read and write the bucket "
     "(s3:PutObject, s3:GetObject, s3:DeleteObject)."},
    {"AllAccessDisabled", ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege,
     "All access to this bucket has been disabled."},
    {"AccountProblem", ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege,
     "The S3 account has a problem; contact the storage provider."},
    {"NoSuchBucket", ErrorKind::kSystemic, sqlstate::kUndefinedObject, "Create the bucket or set reportstore.bucket."},
    {"RequestTimeTooSkewed", ErrorKind::kSystemic, sqlstate::kIoError,
     "The clock of the database server differs too much from the S3 server's; synchronize it (NTP)."},
    {"AuthorizationHeaderMalformed", ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
     "Check reportstore.region: it must be the bucket's region."},
    {"PermanentRedirect", ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
     "The bucket is served by another endpoint or region; check reportstore.endpoint and reportstore.region."},
    {"InvalidBucketName", ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "Check reportstore.bucket."},
    {"NoSuchKey", ErrorKind::kNotFound, kSqlUndefinedFile, ""},
    {"NoSuchVersion", ErrorKind::kNotFound, kSqlUndefinedFile, ""},
    {"BadDigest", ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
     "The body was corrupted on its way to the S3 server; retry the upload."},
    {"InvalidDigest", ErrorKind::kIntegrity, sqlstate::kDataCorrupted, ""},
    {"XAmzContentSHA256Mismatch", ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
     "The body was corrupted on its way to the S3 server; retry the upload."},
    {"EntityTooLarge", ErrorKind::kClient, kSqlProgramLimitExceeded, "The object is larger than the S3 server accepts."},
    {"SlowDown", ErrorKind::kTransient, sqlstate::kIoError, "The S3 server asks to reduce the request rate; retry later."},
    {"ServiceUnavailable", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"InternalError", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"RequestTimeout", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"OperationAborted", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
};

} // namespace

const std::string *ObjectInfo::Meta(std::string_view name) const {
	for (const auto &m : metadata)
		if (m.first == name)
			return &m.second;
	return nullptr;
}

namespace {

// ErrorFromResponse with the whole message given (bucket-level operations).
Error ErrorWithMessage(const http::Response &resp, const std::string &message) {
	using http::TransportStatus;
	if (resp.transport != TransportStatus::kOk) {
		const std::string why = Clean(resp.transport_error);
		switch (resp.transport) {
		case TransportStatus::kTimeout:
			return Error(ErrorKind::kTransient, sqlstate::kIoError, message, "The S3 request timed out: " + why,
			             "Check that the S3 server at reportstore.endpoint is reachable and not overloaded.");
		case TransportStatus::kConnectFailed:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message,
			             "Could not connect to the S3 server: " + why,
			             "Check reportstore.endpoint and that the S3 server is running.");
		case TransportStatus::kResolveFailed:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message,
			             "Could not resolve the S3 server's host name: " + why,
			             "Check the host name in reportstore.endpoint and the DNS configuration.");
		case TransportStatus::kTlsError:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message, "TLS error: " + why,
			             "Check the S3 server's certificate, reportstore.ca_file and reportstore.verify_tls.");
		case TransportStatus::kConnectionLost:
			return Error(ErrorKind::kTransient, sqlstate::kIoError, message,
			             "The connection to the S3 server was lost: " + why, "Retry later.");
		case TransportStatus::kInterrupted:
			return Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, message, "The transfer was interrupted.");
		case TransportStatus::kTooLarge:
			return Error(ErrorKind::kClient, kSqlProgramLimitExceeded, message,
			             "The S3 response is too large: " + why);
		case TransportStatus::kOk:
		case TransportStatus::kOther:
			break;
		}
		return Error(ErrorKind::kTransient, sqlstate::kIoError, message, "HTTP transfer failed: " + why);
	}

	ErrorBody body;
	const bool parsed = !resp.body.empty() && ParseErrorBody(resp.body, &body) && !body.code.empty();
	const std::string status = std::to_string(resp.status);
	if (parsed) {
		const std::string code = Clean(body.code);
		std::string detail = "S3 error " + code + " (HTTP " + status + ")";
		if (!body.message.empty())
			detail += ": " + Clean(body.message);
		if (!body.request_id.empty())
			detail += " (request id " + Clean(body.request_id) + ")";
		for (const CodeClass &c : kCodes) {
			if (body.code == c.code)
				return Error(c.kind, c.sqlstate, message, detail, c.hint);
		}
		if (resp.status >= 500 || resp.status == 429 || resp.status == 408)
			return Error(ErrorKind::kTransient, sqlstate::kIoError, message, detail, "Retry later.");
		if (resp.status == 401)
			return Error(ErrorKind::kSystemic, kSqlInvalidAuthorization, message, detail, kCredentialHint);
		if (resp.status == 403)
			return Error(ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege, message, detail);
		if (resp.status == 404)
			return Error(ErrorKind::kNotFound, kSqlUndefinedFile, message, detail);
		return Error(ErrorKind::kClient, sqlstate::kIoError, message, detail);
	}

	// No S3 error document (HEAD responses, proxies, load balancers).
	const std::string detail = "The S3 server answered HTTP " + status + " without an S3 error document.";
	if (resp.status >= 500 || resp.status == 429 || resp.status == 408)
		return Error(ErrorKind::kTransient, sqlstate::kIoError, message, detail, "Retry later.");
	if (resp.status == 401)
		return Error(ErrorKind::kSystemic, kSqlInvalidAuthorization, message, detail, kCredentialHint);
	if (resp.status == 403)
		return Error(ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege, message, detail,
		             "Check reportstore.access_key_id and reportstore.secret_access_key, and that they are allowed to "
		             "access the bucket.");
	if (resp.status == 404)
		return Error(ErrorKind::kNotFound, kSqlUndefinedFile, message, detail);
	if (resp.status >= 300 && resp.status < 400)
		return Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, message, detail,
		             "The S3 server redirects the request; check reportstore.endpoint and reportstore.region.");
	return Error(ErrorKind::kClient, sqlstate::kIoError, message, detail);
}

// Bucket-level operations need other permissions than the object ones the
// generic AccessDenied hint lists.
Error BucketError(const http::Response &resp, const std::string &message, const char *permission) {
	Error e = ErrorWithMessage(resp, message);
	if (e.sqlstate() == sqlstate::kInsufficientPrivilege)
		return Error(e.kind(), e.sqlstate(), e.what(), e.detail(),
		             std::string("Check that the credentials in reportstore.access_key_id are allowed ") + permission +
		                 " on the bucket.");
	return e;
}

} // namespace

Error ErrorFromResponse(const http::Response &resp, const std::string &operation, const std::string &bucket,
                        const std::string &key) {
	return ErrorWithMessage(resp, "could not " + operation + " object \"" + ObjectName(bucket, key) + "\"");
}

Client::Client(Config config, http::Engine &engine, aws::Clock clock)
    : config_(std::move(config)), engine_(engine),
      signer_(config_.credentials, config_.region, "s3", std::move(clock)) {
}

std::string Client::ObjectUrl(const std::string &bucket, const std::string &key) const {
	const std::string encoded = uri::UriEncode(key, false);
	if (config_.url_style == UrlStyle::kVirtual)
		return config_.endpoint.scheme + "://" + bucket + "." + config_.endpoint.HostHeader() + "/" + encoded;
	return config_.endpoint.Origin() + "/" + bucket + "/" + encoded;
}

namespace {

struct Target {
	std::string url;  // without query string
	std::string host; // Host header
	std::string path; // raw path for the signer
};

Target MakeTarget(const Config &cfg, const std::string &url, const std::string &bucket, const std::string &key) {
	if (bucket.empty())
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "S3 bucket name is empty",
		            "", "Set reportstore.bucket.");
	if (key.empty())
		throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue, "S3 object key is empty");
	Target t;
	t.url = url;
	if (cfg.url_style == UrlStyle::kVirtual) {
		t.host = bucket + "." + cfg.endpoint.HostHeader();
		t.path = "/" + key;
	} else {
		t.host = cfg.endpoint.HostHeader();
		t.path = "/" + bucket + "/" + key;
	}
	return t;
}

// The bucket itself (bucket-level operations: list, lifecycle).
Target MakeBucketTarget(const Config &cfg, const std::string &bucket) {
	if (bucket.empty())
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "S3 bucket name is empty", "",
		            "Set reportstore.bucket.");
	Target t;
	if (cfg.url_style == UrlStyle::kVirtual) {
		t.host = bucket + "." + cfg.endpoint.HostHeader();
		t.path = "/";
		t.url = cfg.endpoint.scheme + "://" + t.host + "/";
	} else {
		t.host = cfg.endpoint.HostHeader();
		t.path = "/" + bucket;
		t.url = cfg.endpoint.Origin() + "/" + bucket;
	}
	return t;
}

[[noreturn]] void InvalidPutArgument(const std::string &what, const std::string &value, const std::string &hint) {
	throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "invalid " + what + " \"" + Clean(value) + "\"",
	            "", hint);
}

void ValidatePutOptions(const PutRequest &req) {
	if (!req.storage_class.empty()) {
		const bool ok = req.storage_class.size() <= 64 &&
		                std::all_of(req.storage_class.begin(), req.storage_class.end(), [](char c) {
			                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
		                });
		if (!ok)
			InvalidPutArgument("S3 storage class", req.storage_class,
			                   "A storage class is a name such as STANDARD, STANDARD_IA or GLACIER_IR.");
	}
	if (!req.sse.empty() && req.sse != "AES256" && req.sse != "aws:kms")
		InvalidPutArgument("S3 server-side encryption", req.sse, "Valid values are AES256 and aws:kms.");
	if (!req.sse_kms_key_id.empty()) {
		if (req.sse != "aws:kms")
			throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
			            "a KMS key id requires server-side encryption aws:kms", "",
			            "Set the server-side encryption to aws:kms or clear the KMS key id.");
		const bool ok = req.sse_kms_key_id.size() <= 2048 &&
		                std::all_of(req.sse_kms_key_id.begin(), req.sse_kms_key_id.end(), [](char c) {
			                const auto u = static_cast<unsigned char>(c);
			                return u > 0x20 && u < 0x7f;
		                });
		if (!ok)
			InvalidPutArgument("KMS key id", req.sse_kms_key_id,
			                   "A KMS key id is a key id, key ARN, alias name or alias ARN, without spaces.");
	}
}

// Adds Host and the signature headers to headers.
http::Request Signed(const aws::Signer &signer, const Target &target, const std::string &method,
                     const aws::QueryParams &query, aws::Headers headers, const std::string &payload_hash) {
	aws::RequestToSign rs;
	rs.method = method;
	rs.host = target.host;
	rs.path = target.path;
	rs.query = query;
	rs.headers = headers;
	rs.payload_hash = payload_hash;
	aws::Headers auth = signer.Sign(rs);

	http::Request req;
	req.method = method;
	req.url = target.url;
	if (!query.empty()) {
		std::string qs;
		for (const auto &q : query) {
			qs += qs.empty() ? "?" : "&";
			qs += uri::UriEncode(q.first, true);
			if (!q.second.empty()) // "?lifecycle": a sub-resource without a value
				qs += "=" + uri::UriEncode(q.second, true);
		}
		req.url += qs;
	}
	req.headers.emplace_back("Host", target.host);
	for (auto &h : headers)
		req.headers.push_back(std::move(h));
	for (auto &h : auth)
		req.headers.push_back(std::move(h));
	return req;
}

aws::QueryParams VersionQuery(const ObjectRef &ref) {
	aws::QueryParams q;
	if (!ref.version_id.empty())
		q.emplace_back("versionId", ref.version_id);
	return q;
}

} // namespace

aws::Headers Client::PutHeaders(const PutRequest &req, const std::string &sha256_hex,
                                const std::string &md5_base64) const {
	aws::Headers headers;
	auto add = [&](const std::string &name, const std::string &value) {
		if (!ValidHeaderValue(value))
			throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue,
			            "invalid value for S3 header \"" + name + "\"", "It contains a control character.");
		headers.emplace_back(name, value);
	};
	add("content-type", req.content_type.empty() ? "application/octet-stream" : req.content_type);
	if (!md5_base64.empty())
		add("content-md5", md5_base64);
	if (!req.content_encoding.empty())
		add("content-encoding", req.content_encoding);
	if (!req.storage_class.empty())
		add("x-amz-storage-class", req.storage_class);
	if (!req.sse.empty())
		add("x-amz-server-side-encryption", req.sse);
	if (!req.sse_kms_key_id.empty())
		add("x-amz-server-side-encryption-aws-kms-key-id", req.sse_kms_key_id);
	add(std::string("x-amz-meta-") + kSha256MetaKey, sha256_hex);
	for (const auto &m : req.metadata) {
		const std::string name = Lower(m.first);
		if (!ValidHeaderToken(name))
			throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue,
			            "invalid S3 metadata name \"" + Clean(m.first) + "\"");
		if (name == kSha256MetaKey)
			continue; // ours, computed from the bytes
		add("x-amz-meta-" + name, m.second);
	}
	return headers;
}

http::Request Client::BuildPut(const PutRequest &req, const crypto::PayloadDigests &digests) const {
	ValidatePutOptions(req);
	const Target target = MakeTarget(config_, ObjectUrl(req.bucket, req.key), req.bucket, req.key);
	aws::Headers headers = PutHeaders(req, digests.sha256_hex, digests.md5_base64);
	http::Request r = Signed(signer_, target, "PUT", {}, std::move(headers), digests.sha256_hex);
	r.body = req.body;
	r.timeout_ms = config_.timeouts.Scaled(req.body.size());
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	r.max_response_bytes = 1u << 20;
	return r;
}

namespace {

// Checks a PUT response; `head` re-reads the object's metadata when the
// ETag is not the body's MD5 (multipart, SSE-KMS, SSE-C).
template <typename HeadFn>
PutResult VerifyPut(const PutRequest &req, const crypto::PayloadDigests &digests, const http::Response &resp,
                    HeadFn &&head) {
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw ErrorFromResponse(resp, "upload", req.bucket, req.key);
	PutResult result;
	result.sha256_hex = digests.sha256_hex;
	result.size = req.body.size();
	result.seconds = resp.seconds;
	if (const std::string *v = resp.Header("x-amz-version-id"))
		result.version_id = *v;
	if (const std::string *e = resp.Header("etag"))
		result.etag = StripQuotes(*e);

	// With SSE-KMS the ETag is not the MD5, whether or not the server echoes
	// the encryption header.
	const std::string *sse = resp.Header("x-amz-server-side-encryption");
	const bool etag_is_md5 = IsHex32(result.etag) && !resp.Header("x-amz-server-side-encryption-customer-algorithm") &&
	                         !(sse && Lower(*sse).compare(0, 7, "aws:kms") == 0) &&
	                         Lower(req.sse).compare(0, 7, "aws:kms") != 0;
	if (etag_is_md5) {
		if (Lower(result.etag) != Lower(digests.md5_hex))
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     "The S3 server returned ETag " + Clean(result.etag) + " but the MD5 of the body is " +
			                         digests.md5_hex + ".");
		return result;
	}
	ObjectRef ref{req.bucket, req.key, result.version_id};
	const ObjectInfo info = head(ref);
	if (info.size != req.body.size())
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     "The stored object has " + std::to_string(info.size) + " bytes, " +
		                         std::to_string(req.body.size()) + " were sent.");
	const std::string *sha = info.Meta(kSha256MetaKey);
	if (!sha || Lower(*sha) != digests.sha256_hex)
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     sha ? "The stored object's SHA-256 metadata is " + Clean(*sha) + ", the body's is " +
		                               digests.sha256_hex + "."
		                         : std::string("The stored object has no SHA-256 metadata."));
	return result;
}

} // namespace

PutResult Client::Put(const PutRequest &req, const http::InterruptProbe &probe) const {
	if (req.body.size() > config_.multipart_threshold)
		return PutMultipart(req, probe);
	const crypto::PayloadDigests digests = crypto::DigestPayload(req.body);
	const http::Request r = BuildPut(req, digests);
	const http::Response resp = engine_.PerformOne(r, probe);
	return VerifyPut(req, digests, resp, [&](const ObjectRef &ref) { return Head(ref, probe); });
}

std::vector<PutOutcome> Client::PutMany(const std::vector<PutRequest> &reqs, int max_concurrency,
                                        const http::InterruptProbe &probe) const {
	std::vector<PutOutcome> outcomes(reqs.size());
	std::vector<crypto::PayloadDigests> digests(reqs.size());
	std::vector<http::Request> batch;
	std::vector<std::size_t> positions; // batch index -> reqs index
	std::vector<std::size_t> multipart; // reqs indexes of the large bodies
	batch.reserve(reqs.size());
	positions.reserve(reqs.size());
	for (std::size_t i = 0; i < reqs.size(); ++i) {
		if (reqs[i].body.size() > config_.multipart_threshold) {
			multipart.push_back(i);
			continue;
		}
		try {
			digests[i] = crypto::DigestPayload(reqs[i].body);
			batch.push_back(BuildPut(reqs[i], digests[i]));
			positions.push_back(i);
		} catch (const Error &e) {
			outcomes[i].error = e;
		}
	}
	std::vector<http::Response> responses = engine_.Perform(batch, max_concurrency, probe);
	for (std::size_t b = 0; b < batch.size(); ++b) {
		const std::size_t i = positions[b];
		try {
			outcomes[i].result =
			    VerifyPut(reqs[i], digests[i], responses[b], [&](const ObjectRef &ref) { return Head(ref, probe); });
		} catch (const Error &e) {
			outcomes[i].error = e;
		} catch (const std::exception &e) {
			outcomes[i].error = Error(ErrorKind::kInternal, sqlstate::kInternalError,
			                          "could not upload object \"" + ObjectName(reqs[i].bucket, reqs[i].key) + "\"",
			                          e.what());
		}
	}
	// Large bodies one at a time, each with its parts concurrent; a failure
	// stays in its outcome.
	for (const std::size_t i : multipart) {
		try {
			outcomes[i].result = PutMultipart(reqs[i], probe);
		} catch (const Error &e) {
			outcomes[i].error = e;
		} catch (const std::exception &e) {
			outcomes[i].error = Error(ErrorKind::kInternal, sqlstate::kInternalError,
			                          "could not upload object \"" + ObjectName(reqs[i].bucket, reqs[i].key) + "\"",
			                          e.what());
		}
	}
	return outcomes;
}

ObjectInfo Client::Get(const ObjectRef &ref, std::string *body, const http::InterruptProbe &probe,
                       const std::string &expected_sha256_hex, std::int64_t expected_size) const {
	const Target target = MakeTarget(config_, ObjectUrl(ref.bucket, ref.key), ref.bucket, ref.key);
	http::Request r = Signed(signer_, target, "GET", VersionQuery(ref), {}, crypto::kEmptySha256Hex);
	r.timeout_ms = config_.timeouts.Scaled(expected_size > 0 ? static_cast<std::uint64_t>(expected_size) : 0);
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	// With an expected size, anything much bigger is refused early; error
	// documents (a few hundred bytes) must still fit.
	r.max_response_bytes = expected_size >= 0
	                           ? std::max<std::uint64_t>(static_cast<std::uint64_t>(expected_size), 64u << 10)
	                           : kMaxGetBytes;
	http::Response resp = engine_.PerformOne(r, probe);

	if (resp.transport == http::TransportStatus::kTooLarge && expected_size >= 0)
		throw IntegrityError("downloaded", ref.bucket, ref.key,
		                     "The object is larger than the expected " + std::to_string(expected_size) + " bytes.");
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200) {
		throw ErrorFromResponse(resp, "download", ref.bucket, ref.key);
	}

	ObjectInfo info = InfoFromHeaders(resp);
	const std::uint64_t received = resp.body.size();
	if (const std::string *cl = resp.Header("content-length")) {
		std::uint64_t declared = 0;
		if (!ParseUint(*cl, &declared) || declared != received)
			throw IntegrityError("downloaded", ref.bucket, ref.key,
			                     "Content-Length is " + Clean(*cl) + " but " + std::to_string(received) +
			                         " bytes were received.");
	}
	if (expected_size >= 0 && received != static_cast<std::uint64_t>(expected_size))
		throw IntegrityError("downloaded", ref.bucket, ref.key,
		                     "Expected " + std::to_string(expected_size) + " bytes, received " +
		                         std::to_string(received) + ".");
	info.size = received;

	std::string expected = Lower(expected_sha256_hex);
	const char *source = "the expected";
	if (expected.empty()) {
		if (const std::string *m = info.Meta(kSha256MetaKey)) {
			expected = Lower(*m);
			source = "the object's metadata";
		}
	}
	if (!expected.empty()) {
		const std::string actual = crypto::HexEncode(crypto::Sha256(resp.body));
		if (actual != expected)
			throw IntegrityError("downloaded", ref.bucket, ref.key,
			                     "SHA-256 of the received bytes is " + actual + ", " + source + " SHA-256 is " +
			                         Clean(expected) + ".");
	}
	if (body)
		*body = std::move(resp.body);
	return info;
}

// A bodiless request on one object (HEAD, DELETE): small responses only.
http::Request Client::ObjectRequest(const char *method, const ObjectRef &ref) const {
	const Target target = MakeTarget(config_, ObjectUrl(ref.bucket, ref.key), ref.bucket, ref.key);
	http::Request r = Signed(signer_, target, method, VersionQuery(ref), {}, crypto::kEmptySha256Hex);
	r.timeout_ms = config_.timeouts.request_ms;
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	r.max_response_bytes = 1u << 20;
	return r;
}

ObjectInfo Client::Head(const ObjectRef &ref, const http::InterruptProbe &probe) const {
	const http::Response resp = engine_.PerformOne(ObjectRequest("HEAD", ref), probe);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw ErrorFromResponse(resp, "look up", ref.bucket, ref.key);
	return InfoFromHeaders(resp);
}

void Client::Delete(const ObjectRef &ref, const http::InterruptProbe &probe) const {
	const http::Response resp = engine_.PerformOne(ObjectRequest("DELETE", ref), probe);
	if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
		return;
	if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
		// The object is already gone; a missing bucket is still an error.
		ErrorBody eb;
		if (!(ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchBucket"))
			return;
	}
	throw ErrorFromResponse(resp, "delete", ref.bucket, ref.key);
}

ListPage Client::List(const std::string &bucket, const std::string &prefix, const std::string &continuation_token,
                      int max_keys, const http::InterruptProbe &probe) const {
	const Target target = MakeBucketTarget(config_, bucket);
	aws::QueryParams query = {{"list-type", "2"}};
	if (!prefix.empty())
		query.emplace_back("prefix", prefix);
	if (max_keys > 0)
		query.emplace_back("max-keys", std::to_string(max_keys));
	if (!continuation_token.empty())
		query.emplace_back("continuation-token", continuation_token);
	http::Request r = Signed(signer_, target, "GET", query, {}, crypto::kEmptySha256Hex);
	r.timeout_ms = config_.timeouts.request_ms;
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	r.max_response_bytes = kMaxListBytes;
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw BucketError(resp, "could not list objects under \"" + ObjectName(bucket, prefix) + "\"",
		                  "to list it (s3:ListBucket)");
	return ParseListObjectsV2(resp.body);
}

std::string Client::GetBucketLifecycle(const std::string &bucket, const http::InterruptProbe &probe) const {
	const Target target = MakeBucketTarget(config_, bucket);
	http::Request r = Signed(signer_, target, "GET", {{"lifecycle", ""}}, {}, crypto::kEmptySha256Hex);
	r.timeout_ms = config_.timeouts.request_ms;
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	r.max_response_bytes = kMaxLifecycleBytes;
	http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport == http::TransportStatus::kOk && resp.status == 200)
		return std::move(resp.body);
	if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
		ErrorBody eb;
		if (ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchLifecycleConfiguration")
			return {};
	}
	throw BucketError(resp, "could not read the lifecycle configuration of bucket \"" + Clean(bucket) + "\"",
	                  "to read its lifecycle configuration (s3:GetLifecycleConfiguration)");
}

namespace {

// XML character data; control characters other than tab/newline/CR cannot
// appear in XML 1.0 at all and are rejected by the caller.
std::string XmlEscape(std::string_view s) {
	std::string out;
	for (char c : s) {
		switch (c) {
		case '&':
			out += "&amp;";
			break;
		case '<':
			out += "&lt;";
			break;
		case '>':
			out += "&gt;";
			break;
		case '"':
			out += "&quot;";
			break;
		case '\'':
			out += "&apos;";
			break;
		case '\r':
			out += "&#13;";
			break;
		default:
			out += c;
		}
	}
	return out;
}

bool XmlSafe(std::string_view s) {
	for (char c : s) {
		const auto u = static_cast<unsigned char>(c);
		if ((u < 0x20 && u != '\t' && u != '\n' && u != '\r') || u == 0x7f)
			return false;
	}
	return true;
}

} // namespace

std::string Client::LifecycleExpiryXml(const std::string &prefix, int days, const std::string &rule_id) {
	if (days < 1)
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle expiration of " + std::to_string(days) + " days", "",
		            "The expiration must be at least 1 day.");
	if (rule_id.empty() || rule_id.size() > 255 || !XmlSafe(rule_id))
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle rule id \"" + Clean(rule_id) + "\"",
		            "A rule id has 1 to 255 characters and no control characters.");
	if (prefix.size() > 1024 || !XmlSafe(prefix))
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle prefix \"" + Clean(prefix) + "\"",
		            "A prefix has at most 1024 bytes and no control characters.");
	return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	       "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	       "<Rule><ID>" +
	       XmlEscape(rule_id) + "</ID><Filter><Prefix>" + XmlEscape(prefix) +
	       "</Prefix></Filter><Status>Enabled</Status><Expiration><Days>" + std::to_string(days) +
	       "</Days></Expiration></Rule></LifecycleConfiguration>";
}

void Client::PutBucketLifecycleExpiry(const std::string &bucket, const std::string &prefix, int days,
                                      const std::string &rule_id, const http::InterruptProbe &probe) const {
	const Target target = MakeBucketTarget(config_, bucket);
	const std::string body = LifecycleExpiryXml(prefix, days, rule_id);
	const crypto::PayloadDigests digests = crypto::DigestPayload(body);
	aws::Headers headers = {{"content-type", "application/xml"}, {"content-md5", digests.md5_base64}};
	http::Request r = Signed(signer_, target, "PUT", {{"lifecycle", ""}}, std::move(headers), digests.sha256_hex);
	r.body = body;
	r.timeout_ms = config_.timeouts.request_ms;
	r.connect_timeout_ms = config_.timeouts.connect_ms;
	r.max_response_bytes = 1u << 20;
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
		return;
	throw BucketError(resp, "could not set the lifecycle configuration of bucket \"" + Clean(bucket) + "\"",
	                  "to change its lifecycle configuration (s3:PutLifecycleConfiguration)");
}

// --- Multipart uploads -------------------------------------------------------

namespace {

// The same error with the multipart step it happened in before its detail.
Error InStep(const Error &e, const std::string &step) {
	return Error(e.kind(), e.sqlstate(), e.what(), e.detail().empty() ? step : step + ": " + e.detail(), e.hint());
}

// With SSE-KMS (asked for or reported) ETags are not MD5s.
bool KmsEncrypted(const PutRequest &req, const http::Response &resp) {
	const std::string *sse = resp.Header("x-amz-server-side-encryption");
	return (sse && Lower(*sse).compare(0, 7, "aws:kms") == 0) || Lower(req.sse).compare(0, 7, "aws:kms") == 0 ||
	       resp.Header("x-amz-server-side-encryption-customer-algorithm") != nullptr;
}

bool HexToBytes(std::string_view hex, std::string *out) {
	if (hex.size() % 2 != 0)
		return false;
	out->clear();
	for (std::size_t i = 0; i < hex.size(); i += 2) {
		auto nibble = [](char c) {
			if (c >= '0' && c <= '9')
				return c - '0';
			if (c >= 'a' && c <= 'f')
				return c - 'a' + 10;
			if (c >= 'A' && c <= 'F')
				return c - 'A' + 10;
			return -1;
		};
		const int hi = nibble(hex[i]);
		const int lo = nibble(hex[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->push_back(static_cast<char>(hi * 16 + lo));
	}
	return true;
}

// Checks one UploadPart response and returns the part's ETag (unquoted).
std::string CheckPart(const PutRequest &req, std::size_t number, std::size_t count,
                      const crypto::PayloadDigests &digests, const http::Response &resp) {
	const std::string step = "UploadPart " + std::to_string(number) + " of " + std::to_string(count);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw InStep(ErrorFromResponse(resp, "upload", req.bucket, req.key), step);
	const std::string *e = resp.Header("etag");
	const std::string etag = e ? StripQuotes(*e) : std::string();
	if (etag.empty() || !XmlSafe(etag))
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     step + ": the S3 server returned " + (etag.empty() ? "no ETag" : "an invalid ETag") + ".");
	if (!KmsEncrypted(req, resp) && Lower(etag) != digests.md5_hex)
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     step + ": the S3 server returned ETag " + Clean(etag) + " but the MD5 of the part is " +
		                         digests.md5_hex + ".");
	return etag;
}

} // namespace

std::uint64_t Client::PartSizeFor(std::uint64_t size) const {
	const std::uint64_t fewest = size / kMaxParts + (size % kMaxParts != 0 ? 1 : 0);
	return std::max({config_.part_size, kMinPartSize, fewest});
}

std::string Client::MultipartEtag(const std::vector<std::string> &part_md5_hex) {
	std::string concatenated;
	concatenated.reserve(part_md5_hex.size() * 16);
	std::string bytes;
	for (const std::string &hex : part_md5_hex) {
		if (hex.size() != 32 || !HexToBytes(hex, &bytes))
			throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "invalid part MD5 \"" + Clean(hex) + "\"");
		concatenated += bytes;
	}
	return crypto::HexEncode(crypto::Md5(concatenated)) + "-" + std::to_string(part_md5_hex.size());
}

std::string Client::AbortMultipart(const PutRequest &req, const std::string &upload_id) const {
	try {
		const Target target = MakeTarget(config_, ObjectUrl(req.bucket, req.key), req.bucket, req.key);
		http::Request r =
		    Signed(signer_, target, "DELETE", {{"uploadId", upload_id}}, {}, crypto::kEmptySha256Hex);
		// Sent even when the caller was interrupted, so with a short timeout.
		r.timeout_ms = std::min(config_.timeouts.request_ms, 10000L);
		r.connect_timeout_ms = std::min(config_.timeouts.connect_ms, 5000L);
		r.max_response_bytes = 1u << 20;
		const http::Response resp = engine_.PerformOne(r, [] { return false; });
		if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
			return {};
		if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
			ErrorBody eb;
			if (ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchUpload")
				return {}; // already gone (or completed)
		}
		return ErrorFromResponse(resp, "abort the upload of", req.bucket, req.key).detail();
	} catch (const std::exception &e) {
		return e.what();
	}
}

PutResult Client::PutMultipart(const PutRequest &req, const http::InterruptProbe &probe) const {
	const auto start = std::chrono::steady_clock::now();
	ValidatePutOptions(req);
	const Target target = MakeTarget(config_, ObjectUrl(req.bucket, req.key), req.bucket, req.key);
	const std::uint64_t size = req.body.size();
	const std::string sha256_hex = crypto::HexEncode(crypto::Sha256(req.body));
	const aws::Headers create_headers = PutHeaders(req, sha256_hex, "");

	// Part digests before anything exists on the server.
	const std::uint64_t part_size = PartSizeFor(size);
	const auto count = static_cast<std::size_t>(size / part_size + (size % part_size != 0 ? 1 : 0));
	std::vector<std::string_view> slices(count);
	std::vector<crypto::PayloadDigests> digests(count);
	for (std::size_t i = 0; i < count; ++i) {
		slices[i] = req.body.substr(static_cast<std::size_t>(i * part_size), static_cast<std::size_t>(part_size));
		digests[i] = crypto::DigestPayload(slices[i]);
	}

	// CreateMultipartUpload: the object's headers go here.
	std::string upload_id;
	{
		http::Request r = Signed(signer_, target, "POST", {{"uploads", ""}}, create_headers, crypto::kEmptySha256Hex);
		r.timeout_ms = config_.timeouts.request_ms;
		r.connect_timeout_ms = config_.timeouts.connect_ms;
		r.max_response_bytes = 1u << 20;
		const http::Response resp = engine_.PerformOne(r, probe);
		if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
			throw InStep(ErrorFromResponse(resp, "upload", req.bucket, req.key), "CreateMultipartUpload");
		try {
			upload_id = ParseInitiateMultipartUpload(resp.body);
		} catch (const Error &e) {
			throw Error(e.kind(), e.sqlstate(), "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"",
			            std::string("CreateMultipartUpload: ") + e.what() + ": " + e.detail(), e.hint());
		}
	}

	try {
		// The parts, concurrently; the first failure stops the others.
		std::vector<http::Request> parts(count);
		for (std::size_t i = 0; i < count; ++i) {
			http::Request &r = parts[i];
			r = Signed(signer_, target, "PUT", {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id}},
			           {{"content-md5", digests[i].md5_base64}}, digests[i].sha256_hex);
			r.body = slices[i];
			r.timeout_ms = config_.timeouts.Scaled(slices[i].size());
			r.connect_timeout_ms = config_.timeouts.connect_ms;
			r.max_response_bytes = 1u << 20;
		}
		std::vector<std::string> etags(count);
		std::optional<Error> part_error;
		const http::InterruptProbe stop = [&] { return part_error.has_value() || (probe && probe()); };
		std::vector<http::Response> responses = engine_.Perform(
		    parts, std::max(1, config_.part_concurrency), stop, [&](std::size_t i, http::Response &resp) {
			    if (part_error || i >= count)
				    return;
			    try {
				    etags[i] = CheckPart(req, i + 1, count, digests[i], resp);
			    } catch (const Error &e) {
				    part_error = e;
			    }
		    });
		if (part_error)
			throw *part_error;
		for (std::size_t i = 0; i < count; ++i)
			if (etags[i].empty())
				etags[i] = CheckPart(req, i + 1, count, digests[i], responses.at(i));

		// CompleteMultipartUpload.
		std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		                  "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
		for (std::size_t i = 0; i < count; ++i)
			xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>\"" + XmlEscape(etags[i]) +
			       "\"</ETag></Part>";
		xml += "</CompleteMultipartUpload>";
		const crypto::PayloadDigests xml_digests = crypto::DigestPayload(xml);
		http::Request r = Signed(signer_, target, "POST", {{"uploadId", upload_id}},
		                         {{"content-type", "application/xml"}, {"content-md5", xml_digests.md5_base64}},
		                         xml_digests.sha256_hex);
		r.body = xml;
		// S3 may take a while to assemble a large object.
		r.timeout_ms = config_.timeouts.Scaled(size);
		r.connect_timeout_ms = config_.timeouts.connect_ms;
		r.max_response_bytes = 1u << 20;
		const http::Response resp = engine_.PerformOne(r, probe);
		if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
			throw InStep(ErrorFromResponse(resp, "upload", req.bucket, req.key), "CompleteMultipartUpload");
		CompleteMultipartUploadResult done;
		try {
			done = ParseCompleteMultipartUpload(resp.body);
		} catch (const Error &e) {
			throw Error(e.kind(), e.sqlstate(), "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"",
			            std::string("CompleteMultipartUpload: ") + e.what() + ": " + e.detail(), e.hint());
		}
		if (done.is_error) {
			// Classified like the same error with a 5xx status; the detail
			// tells what really happened.
			http::Response as_failure = resp;
			as_failure.status = 500;
			const Error classified = ErrorFromResponse(as_failure, "upload", req.bucket, req.key);
			std::string detail = "CompleteMultipartUpload: HTTP 200 with S3 error " + Clean(done.error.code);
			if (!done.error.message.empty())
				detail += ": " + Clean(done.error.message);
			if (!done.error.request_id.empty())
				detail += " (request id " + Clean(done.error.request_id) + ")";
			throw Error(classified.kind(), classified.sqlstate(), classified.what(), detail, classified.hint());
		}

		PutResult result;
		result.etag = done.etag;
		if (result.etag.empty())
			if (const std::string *e = resp.Header("etag"))
				result.etag = StripQuotes(*e);
		result.sha256_hex = sha256_hex;
		result.size = size;
		// "null" is the version of an object in an unversioned (or suspended)
		// bucket; moto sends it and then refuses ?versionId=null.
		if (const std::string *v = resp.Header("x-amz-version-id"); v && *v != "null")
			result.version_id = *v;
		const bool kms = KmsEncrypted(req, resp);
		const std::string expected_etag = MultipartEtag([&] {
			std::vector<std::string> md5s;
			md5s.reserve(count);
			for (const auto &d : digests)
				md5s.push_back(d.md5_hex);
			return md5s;
		}());
		if (!kms && !result.etag.empty() && Lower(result.etag) != expected_etag)
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     "The S3 server returned ETag " + Clean(result.etag) +
			                         " for the completed multipart upload, the parts give " + expected_etag + ".");

		// The stored object: size, SHA-256 metadata, ETag.
		const ObjectInfo info = Head({req.bucket, req.key, result.version_id}, probe);
		if (result.etag.empty()) {
			// Ceph RGW 16 completes with an empty ETag; the stored object's
			// ETag proves which parts were assembled.
			if (!kms && info.etag.empty())
				throw Error(ErrorKind::kProtocol, sqlstate::kProtocolViolation,
				            "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"",
				            "CompleteMultipartUpload: neither the response nor the stored object has an ETag, so "
				            "the assembled object cannot be checked against its parts.",
				            "The S3 server does not follow the S3 API here; retrying will not change that. Raise "
				            "reportstore.multipart_threshold above the largest report to avoid multipart uploads.");
			result.etag = info.etag;
			if (!kms && Lower(result.etag) != expected_etag)
				throw IntegrityError("uploaded", req.bucket, req.key,
				                     "The stored object's ETag is " + Clean(result.etag) +
				                         " after the multipart upload, the parts give " + expected_etag + ".");
		}
		if (info.size != size)
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     "The stored object has " + std::to_string(info.size) + " bytes, " +
			                         std::to_string(size) + " were sent.");
		const std::string *sha = info.Meta(kSha256MetaKey);
		if (!sha || Lower(*sha) != sha256_hex)
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     sha ? "The stored object's SHA-256 metadata is " + Clean(*sha) + ", the body's is " +
			                               sha256_hex + "."
			                         : std::string("The stored object has no SHA-256 metadata."));
		if (!kms && !info.etag.empty() && Lower(info.etag) != Lower(result.etag))
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     "The stored object's ETag is " + Clean(info.etag) + ", the upload's is " +
			                         Clean(result.etag) + ".");
		result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
		return result;
	} catch (const Error &e) {
		const std::string why = AbortMultipart(req, upload_id);
		if (why.empty())
			throw;
		throw Error(e.kind(), e.sqlstate(), e.what(),
		            e.detail() + " The multipart upload could not be aborted (" + why +
		                "); it stays incomplete until it is aborted or a lifecycle rule "
		                "(AbortIncompleteMultipartUpload) removes it.",
		            e.hint());
	} catch (...) {
		AbortMultipart(req, upload_id);
		throw;
	}
}

std::string Client::PresignGet(const ObjectRef &ref, std::chrono::seconds expires) const {
	const Target target = MakeTarget(config_, ObjectUrl(ref.bucket, ref.key), ref.bucket, ref.key);
	aws::RequestToSign rs;
	rs.method = "GET";
	rs.host = target.host;
	rs.path = target.path;
	rs.query = VersionQuery(ref);
	rs.payload_hash = "UNSIGNED-PAYLOAD";
	return target.url + "?" + signer_.Presign(rs, expires);
}

} // namespace reportstore::s3
