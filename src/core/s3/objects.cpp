// S3 object operations: PUT (one or many), GET, HEAD, DELETE, presigned GET.
// See client.hpp.
#include "core/s3/client.hpp"

#include <algorithm>
#include <utility>

#include "core/crypto.hpp"
#include "core/s3/errors.hpp"
#include "core/s3/request.hpp"
#include "core/s3/verify.hpp"
#include "core/s3/xml.hpp"
#include "core/strings.hpp"

namespace reportstore::s3 {

namespace {

constexpr std::uint64_t kMaxGetBytes = 0x3fffffff; // PostgreSQL's MaxAllocSize

ObjectInfo InfoFromHeaders(const http::Response &resp) {
	ObjectInfo info;
	for (const auto &h : resp.headers) {
		const std::string &name = h.first;
		if (name == "content-length")
			strings::ParseUint(h.second, &info.size);
		else if (name == "etag")
			info.etag = strings::StripQuotes(h.second);
		else if (name == "x-amz-version-id")
			info.version_id = h.second;
		else if (name == "content-type")
			info.content_type = h.second;
		else if (name == "content-encoding")
			info.content_encoding = h.second;
		else if (name.size() > 11 && strings::StartsWith(name, "x-amz-meta-"))
			info.metadata.emplace_back(name.substr(11), h.second);
	}
	return info;
}

// Checks a PUT response; `head` re-reads the object's metadata when the
// ETag is not the body's MD5 (SSE-KMS, SSE-C, or a server that says so).
template <typename HeadFn>
PutResult VerifyPut(const PutRequest &req, const crypto::PayloadDigests &digests, const http::Response &resp,
                    HeadFn &&head) {
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw UploadError(req, resp);
	CheckSseS3Confirmed(req, resp, "PutObject");
	PutResult result;
	result.sha256_hex = digests.sha256_hex;
	result.size = req.body.size();
	result.seconds = resp.seconds;
	if (const std::string *v = resp.Header("x-amz-version-id"))
		result.version_id = *v;
	if (const std::string *e = resp.Header("etag"))
		result.etag = strings::StripQuotes(*e);

	const bool etag_is_md5 = result.etag.size() == 32 && strings::IsHex(result.etag) && !EtagIsOpaque(req, resp);
	if (etag_is_md5) {
		if (strings::Lower(result.etag) != strings::Lower(digests.md5_hex))
			throw IntegrityError("uploaded", req.bucket, req.key,
			                     "The S3 server returned ETag " + ServerText(result.etag) +
			                         " but the MD5 of the body is " + digests.md5_hex + ".");
		return result;
	}
	CheckStoredObject(req, head(ObjectRef{req.bucket, req.key, result.version_id}), digests.sha256_hex);
	return result;
}

// Runs upload() into *out: its result, or the error it threw.
template <typename Upload> void CollectOutcome(const PutRequest &req, PutOutcome *out, Upload &&upload) {
	try {
		out->result = upload();
	} catch (const Error &e) {
		out->error = e;
	} catch (const std::exception &e) {
		out->error = Error(ErrorKind::kInternal, sqlstate::kInternalError,
		                   "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"", e.what());
	}
}

} // namespace

const std::string *ObjectInfo::Meta(std::string_view name) const {
	for (const auto &m : metadata)
		if (m.first == name)
			return &m.second;
	return nullptr;
}

Client::Client(Config config, http::Engine &engine, aws::Clock clock)
    : config_(std::move(config)), engine_(engine),
      signer_(CredentialsOf(config_), config_.region, "s3", std::move(clock)) {}

std::string Client::ObjectUrl(const std::string &bucket, const std::string &key) const {
	return ObjectUrlOf(config_, bucket, key);
}

http::Request Client::BuildPut(const PutRequest &req, const crypto::PayloadDigests &digests) const {
	ValidatePutOptions(req);
	http::Request r = SignedRequest(config_, signer_, ObjectTarget(config_, req.bucket, req.key), "PUT", {},
	                                PutHeaders(req, digests.sha256_hex, digests.md5_base64), digests.sha256_hex);
	r.body = req.body;
	r.timeout_ms = config_.timeouts.Scaled(req.body.size());
	return r;
}

// A bodiless request on one object (HEAD, DELETE).
http::Request Client::ObjectRequest(const char *method, const ObjectRef &ref) const {
	return SignedRequest(config_, signer_, ObjectTarget(config_, ref.bucket, ref.key), method, VersionQuery(ref), {},
	                     crypto::kEmptySha256Hex);
}

Client::PreparedPut Client::PreparePut(const PutRequest &req) const {
	PreparedPut prepared;
	prepared.digests = crypto::DigestPayload(req.body);
	prepared.request = BuildPut(req, prepared.digests);
	return prepared;
}

std::optional<PutResult> Client::CheckPutAnswer(const PutRequest &req, const crypto::PayloadDigests &digests,
                                                const http::Response &resp,
                                                const http::InterruptProbe *head_probe) const {
	struct HeadLater {};
	try {
		return VerifyPut(req, digests, resp, [&](const ObjectRef &ref) {
			if (head_probe == nullptr)
				throw HeadLater();
			return Head(ref, *head_probe);
		});
	} catch (const HeadLater &) {
		return std::nullopt;
	}
}

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
		CollectOutcome(reqs[i], &outcomes[i], [&] {
			return VerifyPut(reqs[i], digests[i], responses[b], [&](const ObjectRef &ref) { return Head(ref, probe); });
		});
	}
	// Large bodies one at a time, each with its parts concurrent; a failure
	// stays in its outcome.
	for (const std::size_t i : multipart)
		CollectOutcome(reqs[i], &outcomes[i], [&] { return PutMultipart(reqs[i], probe); });
	return outcomes;
}

http::Request Client::BuildGet(const ObjectRef &ref, std::int64_t expected_size) const {
	http::Request r = SignedRequest(config_, signer_, ObjectTarget(config_, ref.bucket, ref.key), "GET",
	                                VersionQuery(ref), {}, crypto::kEmptySha256Hex);
	r.timeout_ms = config_.timeouts.Scaled(expected_size > 0 ? static_cast<std::uint64_t>(expected_size) : 0);
	// With an expected size, anything much bigger is refused early; error
	// documents (a few hundred bytes) must still fit.
	r.max_response_bytes = expected_size >= 0
	                           ? std::max<std::uint64_t>(static_cast<std::uint64_t>(expected_size), 64u << 10)
	                           : kMaxGetBytes;
	return r;
}

ObjectInfo Client::CheckGetAnswer(const ObjectRef &ref, http::Response &resp, std::string *body,
                                  const std::string &expected_sha256_hex, std::int64_t expected_size) const {
	if (resp.transport == http::TransportStatus::kTooLarge && expected_size >= 0)
		throw IntegrityError("downloaded", ref.bucket, ref.key,
		                     "The object is larger than the expected " + std::to_string(expected_size) + " bytes.");
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw ErrorFromResponse(resp, "download", ref.bucket, ref.key);

	ObjectInfo info = InfoFromHeaders(resp);
	const std::uint64_t received = resp.body.size();
	if (const std::string *cl = resp.Header("content-length")) {
		std::uint64_t declared = 0;
		if (!strings::ParseUint(*cl, &declared) || declared != received)
			throw IntegrityError("downloaded", ref.bucket, ref.key,
			                     "Content-Length is " + ServerText(*cl) + " but " + std::to_string(received) +
			                         " bytes were received.");
	}
	if (expected_size >= 0 && received != static_cast<std::uint64_t>(expected_size))
		throw IntegrityError("downloaded", ref.bucket, ref.key,
		                     "Expected " + std::to_string(expected_size) + " bytes, received " +
		                         std::to_string(received) + ".");
	info.size = received;

	std::string expected = strings::Lower(expected_sha256_hex);
	const char *source = "the expected";
	if (expected.empty()) {
		if (const std::string *m = info.Meta(kSha256MetaKey)) {
			expected = strings::Lower(*m);
			source = "the object's metadata";
		}
	}
	if (!expected.empty()) {
		const std::string actual = crypto::HexEncode(crypto::Sha256(resp.body));
		if (actual != expected)
			throw IntegrityError("downloaded", ref.bucket, ref.key,
			                     "SHA-256 of the received bytes is " + actual + ", " + source + " SHA-256 is " +
			                         ServerText(expected) + ".");
	}
	if (body)
		*body = std::move(resp.body);
	return info;
}

ObjectInfo Client::Get(const ObjectRef &ref, std::string *body, const http::InterruptProbe &probe,
                       const std::string &expected_sha256_hex, std::int64_t expected_size) const {
	http::Response resp = engine_.PerformOne(BuildGet(ref, expected_size), probe);
	return CheckGetAnswer(ref, resp, body, expected_sha256_hex, expected_size);
}

std::vector<GetOutcome> Client::GetMany(const std::vector<GetRequest> &reqs, int max_concurrency,
                                        const http::InterruptProbe &probe) const {
	std::vector<GetOutcome> outcomes(reqs.size());
	std::vector<http::Request> batch;
	batch.reserve(reqs.size());
	for (const GetRequest &g : reqs)
		batch.push_back(BuildGet(g.ref, g.expected_size));
	bool failed = false;
	// Each answer is checked (and its body hashed) as it arrives, while the
	// others are still in flight; after a failure no new GET starts.
	const http::CompletionCallback on_complete = [&](std::size_t i, http::Response &resp) {
		if (resp.transport == http::TransportStatus::kNotSent)
			return;
		try {
			outcomes[i].info = CheckGetAnswer(reqs[i].ref, resp, &outcomes[i].body, reqs[i].expected_sha256_hex,
			                                  reqs[i].expected_size);
		} catch (const Error &e) {
			outcomes[i].error = e;
			failed = true;
		}
		std::string().swap(resp.body);
	};
	(void)engine_.Perform(batch, max_concurrency, probe, on_complete, [&] { return failed; });
	return outcomes;
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

std::string Client::PresignGet(const ObjectRef &ref, std::chrono::seconds expires) const {
	const Target target = ObjectTarget(config_, ref.bucket, ref.key);
	aws::RequestToSign rs;
	rs.method = "GET";
	rs.host = target.host;
	rs.path = target.path;
	rs.query = VersionQuery(ref);
	rs.payload_hash = "UNSIGNED-PAYLOAD";
	return target.url + "?" + signer_.Presign(rs, expires);
}

} // namespace reportstore::s3
