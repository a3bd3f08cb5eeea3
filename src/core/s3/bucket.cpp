// Operations on the bucket itself: ListObjectsV2 and the lifecycle
// configuration. See client.hpp.
#include "core/s3/client.hpp"

#include <algorithm>
#include <utility>

#include "core/crypto.hpp"
#include "core/s3/errors.hpp"
#include "core/s3/request.hpp"
#include "core/s3/xml.hpp"

namespace reportstore::s3 {

namespace {

constexpr std::uint64_t kMaxListBytes = 32u << 20;     // ParseListObjectsV2's bound
constexpr std::uint64_t kMaxLifecycleBytes = 4u << 20; // ParseLifecycleRules' bound

} // namespace

ListPage Client::List(const std::string &bucket, const std::string &prefix, const std::string &continuation_token,
                      int max_keys, const http::InterruptProbe &probe) const {
	aws::QueryParams query = {{"list-type", "2"}};
	if (!prefix.empty())
		query.emplace_back("prefix", prefix);
	if (max_keys > 0)
		query.emplace_back("max-keys", std::to_string(max_keys));
	if (!continuation_token.empty())
		query.emplace_back("continuation-token", continuation_token);
	http::Request r =
	    SignedRequest(config_, signer_, BucketTarget(config_, bucket), "GET", query, {}, crypto::kEmptySha256Hex);
	r.max_response_bytes = kMaxListBytes;
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw BucketError(resp, "could not list objects under \"" + ObjectName(bucket, prefix) + "\"",
		                  "to list it (s3:ListBucket)");
	return ParseListObjectsV2(resp.body);
}

std::string Client::GetBucketLifecycle(const std::string &bucket, const http::InterruptProbe &probe) const {
	http::Request r = SignedRequest(config_, signer_, BucketTarget(config_, bucket), "GET", {{"lifecycle", ""}}, {},
	                                crypto::kEmptySha256Hex);
	r.max_response_bytes = kMaxLifecycleBytes;
	http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport == http::TransportStatus::kOk && resp.status == 200)
		return std::move(resp.body);
	if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
		ErrorBody eb;
		if (ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchLifecycleConfiguration")
			return {};
	}
	throw BucketError(resp, "could not read the lifecycle configuration of bucket \"" + ServerText(bucket) + "\"",
	                  "to read its lifecycle configuration (s3:GetLifecycleConfiguration)");
}

std::string Client::LifecycleExpiryXml(const std::string &prefix, int days, const std::string &rule_id) {
	if (days < 1)
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle expiration of " + std::to_string(days) + " days", "",
		            "The expiration must be at least 1 day.");
	if (rule_id.empty() || rule_id.size() > 255 || !XmlSafe(rule_id))
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle rule id \"" + ServerText(rule_id) + "\"",
		            "A rule id has 1 to 255 characters and no control characters.");
	if (prefix.size() > 1024 || !XmlSafe(prefix))
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "invalid lifecycle prefix \"" + ServerText(prefix) + "\"",
		            "A prefix has at most 1024 bytes and no control characters.");
	return LifecycleExpiryDocument(prefix, days, kAbortIncompleteDays, rule_id);
}

UploadsPage Client::ListIncompleteUploads(const std::string &bucket, const std::string &prefix,
                                          const std::string &key_marker, const std::string &upload_id_marker,
                                          int max_uploads, const http::InterruptProbe &probe) const {
	aws::QueryParams query = {{"uploads", ""}, {"max-uploads", std::to_string(max_uploads > 0 ? max_uploads : 1000)}};
	if (!prefix.empty())
		query.emplace_back("prefix", prefix);
	if (!key_marker.empty())
		query.emplace_back("key-marker", key_marker);
	if (!upload_id_marker.empty())
		query.emplace_back("upload-id-marker", upload_id_marker);
	http::Request r =
	    SignedRequest(config_, signer_, BucketTarget(config_, bucket), "GET", query, {}, crypto::kEmptySha256Hex);
	r.max_response_bytes = kMaxListBytes;
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw BucketError(
		    resp, "could not list the incomplete multipart uploads under \"" + ObjectName(bucket, prefix) + "\"",
		    "to list them (s3:ListBucketMultipartUploads)");
	return ParseListMultipartUploads(resp.body);
}

void Client::AbortUpload(const std::string &bucket, const std::string &key, const std::string &upload_id,
                         const http::InterruptProbe &probe) const {
	const http::Request r = SignedRequest(config_, signer_, ObjectTarget(config_, bucket, key), "DELETE",
	                                      {{"uploadId", upload_id}}, {}, crypto::kEmptySha256Hex);
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
		return;
	if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
		ErrorBody eb;
		if (ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchUpload")
			return; // already gone
	}
	throw ErrorFromResponse(resp, "abort the multipart upload of", bucket, key);
}

bool Client::Answers(const std::string &bucket, const http::InterruptProbe &probe) const noexcept {
	try {
		http::Request r =
		    SignedRequest(config_, signer_, BucketTarget(config_, bucket), "HEAD", {}, {}, crypto::kEmptySha256Hex);
		r.timeout_ms = std::min(config_.timeouts.request_ms, 5000L);
		r.connect_timeout_ms = std::min(config_.timeouts.connect_ms, 3000L);
		return engine_.PerformOne(r, probe).transport == http::TransportStatus::kOk;
	} catch (...) {
		return false;
	}
}

void Client::PutBucketLifecycleExpiry(const std::string &bucket, const std::string &prefix, int days,
                                      const std::string &rule_id, const http::InterruptProbe &probe) const {
	const Target target = BucketTarget(config_, bucket);
	const std::string body = LifecycleExpiryXml(prefix, days, rule_id);
	const crypto::PayloadDigests digests = crypto::DigestPayload(body);
	http::Request r =
	    SignedRequest(config_, signer_, target, "PUT", {{"lifecycle", ""}},
	                  {{"content-type", "application/xml"}, {"content-md5", digests.md5_base64}}, digests.sha256_hex);
	r.body = body;
	const http::Response resp = engine_.PerformOne(r, probe);
	if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
		return;
	throw BucketError(resp, "could not set the lifecycle configuration of bucket \"" + ServerText(bucket) + "\"",
	                  "to change its lifecycle configuration (s3:PutLifecycleConfiguration)");
}

} // namespace reportstore::s3
