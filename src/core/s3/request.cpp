// Targets and signed requests of the S3 client. See request.hpp.
#include "core/s3/request.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "core/http/headers.hpp"
#include "core/s3/errors.hpp"
#include "core/strings.hpp"
#include "core/uri.hpp"

namespace reportstore::s3 {

namespace {

void RequireBucket(const std::string &bucket) {
	if (bucket.empty())
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, "S3 bucket name is empty", "",
		            "Set reportstore.bucket.");
}

[[noreturn]] void InvalidPutArgument(const std::string &what, const std::string &value, const std::string &hint) {
	throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
	            "invalid " + what + " \"" + ServerText(value) + "\"", "", hint);
}

} // namespace

std::string ObjectUrlOf(const Config &config, const std::string &bucket, const std::string &key) {
	const std::string encoded = uri::UriEncode(key, false);
	if (config.url_style == UrlStyle::kVirtual)
		return config.endpoint.scheme + "://" + bucket + "." + config.endpoint.HostHeader() + "/" + encoded;
	return config.endpoint.Origin() + "/" + bucket + "/" + encoded;
}

Target ObjectTarget(const Config &config, const std::string &bucket, const std::string &key) {
	RequireBucket(bucket);
	if (key.empty())
		throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue, "S3 object key is empty");
	Target t;
	t.url = ObjectUrlOf(config, bucket, key);
	if (config.url_style == UrlStyle::kVirtual) {
		t.host = bucket + "." + config.endpoint.HostHeader();
		t.path = "/" + key;
	} else {
		t.host = config.endpoint.HostHeader();
		t.path = "/" + bucket + "/" + key;
	}
	return t;
}

Target BucketTarget(const Config &config, const std::string &bucket) {
	RequireBucket(bucket);
	Target t;
	if (config.url_style == UrlStyle::kVirtual) {
		t.host = bucket + "." + config.endpoint.HostHeader();
		t.path = "/";
		t.url = config.endpoint.scheme + "://" + t.host + "/";
	} else {
		t.host = config.endpoint.HostHeader();
		t.path = "/" + bucket;
		t.url = config.endpoint.Origin() + "/" + bucket;
	}
	return t;
}

http::Request SignedRequest(const Config &config, const aws::Signer &signer, const Target &target,
                            const std::string &method, const aws::QueryParams &query, http::Headers headers,
                            const std::string &payload_hash) {
	aws::RequestToSign rs;
	rs.method = method;
	rs.host = target.host;
	rs.path = target.path;
	rs.query = query;
	rs.headers = headers;
	rs.payload_hash = payload_hash;
	http::Headers auth = signer.Sign(rs);

	http::Request req;
	req.method = method;
	req.url = target.url;
	char separator = '?';
	for (const auto &q : query) {
		req.url += separator;
		separator = '&';
		req.url += uri::UriEncode(q.first, true);
		if (!q.second.empty()) // "?lifecycle": a sub-resource without a value
			req.url += "=" + uri::UriEncode(q.second, true);
	}
	req.headers.emplace_back("Host", target.host);
	for (auto &h : headers)
		req.headers.push_back(std::move(h));
	for (auto &h : auth)
		req.headers.push_back(std::move(h));
	req.timeout_ms = config.timeouts.request_ms;
	req.connect_timeout_ms = config.timeouts.connect_ms;
	req.max_response_bytes = kMaxSmallResponseBytes;
	return req;
}

aws::CredentialsProviderPtr CredentialsOf(const Config &config) {
	return config.credentials_provider ? config.credentials_provider : aws::FixedCredentials(config.credentials);
}

aws::QueryParams VersionQuery(const ObjectRef &ref) {
	aws::QueryParams q;
	if (!ref.version_id.empty())
		q.emplace_back("versionId", ref.version_id);
	return q;
}

void ValidatePutOptions(const PutRequest &req) {
	if (!req.storage_class.empty()) {
		const bool ok = req.storage_class.size() <= 64 &&
		                std::all_of(req.storage_class.begin(), req.storage_class.end(),
		                            [](char c) { return strings::IsAlnum(c) || c == '_' || c == '-'; });
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

http::Headers PutHeaders(const PutRequest &req, const std::string &sha256_hex, const std::string &md5_base64) {
	http::Headers headers;
	auto add = [&](const std::string &name, const std::string &value) {
		if (!http::IsFieldValue(value))
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
	if (req.if_none_match && !md5_base64.empty()) // a single PUT (multipart checks first, see PutRequest)
		add("if-none-match", "*");
	add(std::string("x-amz-meta-") + kSha256MetaKey, sha256_hex);
	for (const auto &m : req.metadata) {
		const std::string name = strings::Lower(m.first);
		if (!http::IsToken(name))
			throw Error(ErrorKind::kInternal, sqlstate::kInvalidParameterValue,
			            "invalid S3 metadata name \"" + ServerText(m.first) + "\"");
		if (name == kSha256MetaKey)
			continue; // ours, computed from the bytes
		add("x-amz-meta-" + name, m.second);
	}
	return headers;
}

} // namespace reportstore::s3
