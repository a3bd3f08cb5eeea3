// Multipart uploads, the path of Client::Put for large bodies (see
// client.hpp): CreateMultipartUpload, the parts concurrently, then
// CompleteMultipartUpload and a check of the stored object. Any failure after
// the upload was created aborts it (AbortMultipartUpload, best effort).
#include "core/s3/client.hpp"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/crypto.hpp"
#include "core/s3/errors.hpp"
#include "core/s3/request.hpp"
#include "core/s3/verify.hpp"
#include "core/s3/xml.hpp"
#include "core/strings.hpp"

namespace reportstore::s3 {

namespace {

// The same error with the multipart step it happened in before its detail.
Error InStep(const Error &e, const std::string &step) {
	Error in_step(e.kind(), e.sqlstate(), e.what(), e.detail().empty() ? step : step + ": " + e.detail(), e.hint());
	if (e.no_answer())
		in_step.MarkNoAnswer();
	return in_step;
}

class MultipartUpload {
  public:
	MultipartUpload(const Client &client, const Config &config, http::Engine &engine, const aws::Signer &signer,
	                const PutRequest &req, const http::InterruptProbe &probe);

	// CreateMultipartUpload. When it fails there is nothing to abort.
	void Create();
	// The answer to CreateMultipartUpload confirmed what was asked for
	// (see CheckSseS3Confirmed); throws, and then the caller aborts.
	void CheckCreated() const;
	// UploadPart for every part, config.part_concurrency at a time; each
	// part's ETag is checked against its MD5. On a failure no new part
	// starts and this returns (throws) once the parts in flight have ended.
	void UploadParts();
	// CompleteMultipartUpload, then the stored object is checked with a HEAD.
	PutResult Complete();
	// AbortMultipartUpload, best effort: "" or why it failed.
	std::string Abort() const;

  private:
	struct Part {
		std::string_view bytes; // a slice of req.body
		crypto::PayloadDigests digests;
		std::string etag; // as the server returned it, unquoted
	};

	http::Request Signed(const char *method, const aws::QueryParams &query, http::Headers headers,
	                     const std::string &payload_hash) const;
	// The error of a failed step, its response classified.
	Error StepFailed(const http::Response &resp, const std::string &step) const;
	// The error of a step whose answer could not be parsed.
	Error StepUnparseable(const Error &parse_error, const char *step) const;
	// Checks one UploadPart response and returns the part's ETag.
	std::string CheckPart(std::size_t index, const http::Response &resp) const;
	// The ETag S3 gives the assembled object, from the parts' MD5s.
	std::string ExpectedEtag() const;

	const Client &client_;
	const Config &config_;
	http::Engine &engine_;
	const aws::Signer &signer_;
	const PutRequest &req_;
	const http::InterruptProbe &probe_;
	const Target target_;
	const std::string sha256_hex_;
	std::vector<Part> parts_;
	std::string upload_id_;
	http::Response created_;
};

MultipartUpload::MultipartUpload(const Client &client, const Config &config, http::Engine &engine,
                                 const aws::Signer &signer, const PutRequest &req, const http::InterruptProbe &probe)
    : client_(client), config_(config), engine_(engine), signer_(signer), req_(req), probe_(probe),
      target_(ObjectTarget(config, req.bucket, req.key)), sha256_hex_(crypto::HexEncode(crypto::Sha256(req.body))) {
	// Part digests before anything exists on the server.
	const std::uint64_t size = req.body.size();
	const std::uint64_t part_size = client.PartSizeFor(size);
	const std::uint64_t count = size / part_size + (size % part_size != 0 ? 1 : 0);
	parts_.resize(static_cast<std::size_t>(count));
	for (std::size_t i = 0; i < parts_.size(); ++i) {
		parts_[i].bytes = req.body.substr(static_cast<std::size_t>(i * part_size), static_cast<std::size_t>(part_size));
		parts_[i].digests = crypto::DigestPayload(parts_[i].bytes);
	}
}

http::Request MultipartUpload::Signed(const char *method, const aws::QueryParams &query, http::Headers headers,
                                      const std::string &payload_hash) const {
	return SignedRequest(config_, signer_, target_, method, query, std::move(headers), payload_hash);
}

Error MultipartUpload::StepFailed(const http::Response &resp, const std::string &step) const {
	return InStep(ErrorFromResponse(resp, "upload", req_.bucket, req_.key), step);
}

Error MultipartUpload::StepUnparseable(const Error &parse_error, const char *step) const {
	return Error(parse_error.kind(), parse_error.sqlstate(),
	             "could not upload object \"" + ObjectName(req_.bucket, req_.key) + "\"",
	             std::string(step) + ": " + parse_error.what() + ": " + parse_error.detail(), parse_error.hint());
}

void MultipartUpload::Create() {
	// The object's headers go here, without a Content-MD5 (there is no body).
	const http::Request r =
	    Signed("POST", {{"uploads", ""}}, PutHeaders(req_, sha256_hex_, ""), crypto::kEmptySha256Hex);
	http::Response resp = engine_.PerformOne(r, probe_);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw InStep(UploadError(req_, resp), "CreateMultipartUpload");
	try {
		upload_id_ = ParseInitiateMultipartUpload(resp.body);
	} catch (const Error &e) {
		throw StepUnparseable(e, "CreateMultipartUpload");
	}
	created_ = std::move(resp);
}

void MultipartUpload::CheckCreated() const {
	CheckSseS3Confirmed(req_, created_, "CreateMultipartUpload");
}

std::string MultipartUpload::CheckPart(std::size_t index, const http::Response &resp) const {
	const std::string step = "UploadPart " + std::to_string(index + 1) + " of " + std::to_string(parts_.size());
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw StepFailed(resp, step);
	const std::string *header = resp.Header("etag");
	const std::string etag = header ? strings::StripQuotes(*header) : std::string();
	if (etag.empty() || !XmlSafe(etag))
		throw IntegrityError("uploaded", req_.bucket, req_.key,
		                     step + ": the S3 server returned " + (etag.empty() ? "no ETag" : "an invalid ETag") + ".");
	const std::string &md5_hex = parts_[index].digests.md5_hex;
	if (!EtagIsOpaque(req_, resp) && strings::Lower(etag) != md5_hex)
		throw IntegrityError("uploaded", req_.bucket, req_.key,
		                     step + ": the S3 server returned ETag " + ServerText(etag) +
		                         " but the MD5 of the part is " + md5_hex + ".");
	return etag;
}

void MultipartUpload::UploadParts() {
	std::vector<http::Request> requests;
	requests.reserve(parts_.size());
	for (std::size_t i = 0; i < parts_.size(); ++i) {
		const Part &part = parts_[i];
		http::Request r = Signed("PUT", {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload_id_}},
		                         {{"content-md5", part.digests.md5_base64}}, part.digests.sha256_hex);
		r.body = part.bytes;
		r.timeout_ms = config_.timeouts.Scaled(part.bytes.size());
		requests.push_back(std::move(r));
	}
	// A part whose transfer is cut short may still be stored by S3, after
	// the abort. So the first failure stops new parts but lets those in
	// flight end; then the caller aborts. Only an interruption (the probe)
	// cuts transfers short: the caller wants to stop now.
	std::optional<Error> failure;
	engine_.Perform(
	    requests, std::max(1, config_.part_concurrency), probe_,
	    [&](std::size_t i, http::Response &resp) {
		    if (failure)
			    return; // the first failure is the one reported
		    try {
			    parts_.at(i).etag = CheckPart(i, resp);
		    } catch (const Error &e) {
			    failure = e;
		    }
	    },
	    [&] { return failure.has_value(); });
	if (failure)
		throw *failure;
}

std::string MultipartUpload::ExpectedEtag() const {
	std::vector<std::string> md5s;
	md5s.reserve(parts_.size());
	for (const Part &part : parts_)
		md5s.push_back(part.digests.md5_hex);
	return Client::MultipartEtag(md5s);
}

PutResult MultipartUpload::Complete() {
	std::vector<std::string> etags;
	etags.reserve(parts_.size());
	for (const Part &part : parts_)
		etags.push_back(part.etag);
	const std::string xml = CompleteMultipartUploadXml(etags);
	const crypto::PayloadDigests xml_digests = crypto::DigestPayload(xml);
	http::Request r =
	    Signed("POST", {{"uploadId", upload_id_}},
	           {{"content-type", "application/xml"}, {"content-md5", xml_digests.md5_base64}}, xml_digests.sha256_hex);
	r.body = xml;
	r.timeout_ms = config_.timeouts.Scaled(req_.body.size()); // S3 may take a while to assemble a large object
	const http::Response resp = engine_.PerformOne(r, probe_);
	if (resp.transport != http::TransportStatus::kOk || resp.status != 200)
		throw StepFailed(resp, "CompleteMultipartUpload");
	CompleteMultipartUploadResult done;
	try {
		done = ParseCompleteMultipartUpload(resp.body);
	} catch (const Error &e) {
		throw StepUnparseable(e, "CompleteMultipartUpload");
	}
	if (done.is_error) {
		// Classified like the same error with a 5xx status; the detail tells
		// what really happened.
		http::Response as_failure = resp;
		as_failure.status = 500;
		const Error classified = ErrorFromResponse(as_failure, "upload", req_.bucket, req_.key);
		std::string detail = "CompleteMultipartUpload: HTTP 200 with S3 error " + ServerText(done.error.code);
		if (!done.error.message.empty())
			detail += ": " + ServerText(done.error.message);
		if (!done.error.request_id.empty())
			detail += " (request id " + ServerText(done.error.request_id) + ")";
		throw Error(classified.kind(), classified.sqlstate(), classified.what(), detail, classified.hint());
	}

	PutResult result;
	result.etag = done.etag;
	if (result.etag.empty())
		if (const std::string *e = resp.Header("etag"))
			result.etag = strings::StripQuotes(*e);
	result.sha256_hex = sha256_hex_;
	result.size = req_.body.size();
	// "null" is the version of an object in an unversioned (or suspended)
	// bucket; moto sends it and then refuses ?versionId=null.
	if (const std::string *v = resp.Header("x-amz-version-id"); v && *v != "null")
		result.version_id = *v;
	const bool opaque = EtagIsOpaque(req_, resp);
	const std::string expected_etag = ExpectedEtag();
	if (!opaque && !result.etag.empty() && strings::Lower(result.etag) != expected_etag)
		throw IntegrityError("uploaded", req_.bucket, req_.key,
		                     "The S3 server returned ETag " + ServerText(result.etag) +
		                         " for the completed multipart upload, the parts give " + expected_etag + ".");

	// The stored object: size, SHA-256 metadata, ETag.
	const ObjectInfo info = client_.Head({req_.bucket, req_.key, result.version_id}, probe_);
	if (result.etag.empty()) {
		// Ceph RGW 16 completes with an empty ETag; the stored object's ETag
		// proves which parts were assembled.
		if (!opaque && info.etag.empty())
			throw Error(ErrorKind::kProtocol, sqlstate::kProtocolViolation,
			            "could not upload object \"" + ObjectName(req_.bucket, req_.key) + "\"",
			            "CompleteMultipartUpload: neither the response nor the stored object has an ETag, so the "
			            "assembled object cannot be checked against its parts.",
			            "The S3 server does not follow the S3 API here; retrying will not change that. Raise "
			            "reportstore.multipart_threshold above the largest report to avoid multipart uploads.");
		result.etag = info.etag;
		if (!opaque && strings::Lower(result.etag) != expected_etag)
			throw IntegrityError("uploaded", req_.bucket, req_.key,
			                     "The stored object's ETag is " + ServerText(result.etag) +
			                         " after the multipart upload, the parts give " + expected_etag + ".");
	}
	CheckStoredObject(req_, info, sha256_hex_);
	if (!opaque && !info.etag.empty() && strings::Lower(info.etag) != strings::Lower(result.etag))
		throw IntegrityError("uploaded", req_.bucket, req_.key,
		                     "The stored object's ETag is " + ServerText(info.etag) + ", the upload's is " +
		                         ServerText(result.etag) + ".");
	return result;
}

std::string MultipartUpload::Abort() const {
	try {
		http::Request r = Signed("DELETE", {{"uploadId", upload_id_}}, {}, crypto::kEmptySha256Hex);
		// Sent even when the caller was interrupted, so with short timeouts.
		r.timeout_ms = std::min(config_.timeouts.request_ms, 10000L);
		r.connect_timeout_ms = std::min(config_.timeouts.connect_ms, 5000L);
		const http::Response resp = engine_.PerformOne(r, [] { return false; });
		if (resp.transport == http::TransportStatus::kOk && (resp.status == 200 || resp.status == 204))
			return {};
		if (resp.transport == http::TransportStatus::kOk && resp.status == 404) {
			ErrorBody eb;
			if (ParseErrorBody(resp.body, &eb) && eb.code == "NoSuchUpload")
				return {}; // already gone (or completed)
		}
		return ErrorFromResponse(resp, "abort the upload of", req_.bucket, req_.key).detail();
	} catch (const std::exception &e) {
		return e.what();
	}
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
		if (hex.size() != 32 || !strings::HexDecode(hex, &bytes))
			throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "invalid part MD5 \"" + ServerText(hex) + "\"");
		concatenated += bytes;
	}
	return crypto::HexEncode(crypto::Md5(concatenated)) + "-" + std::to_string(part_md5_hex.size());
}

PutResult Client::PutMultipart(const PutRequest &req, const http::InterruptProbe &probe) const {
	const auto start = std::chrono::steady_clock::now();
	ValidatePutOptions(req);
	if (req.if_none_match) {
		// S3 servers differ on conditional CompleteMultipartUpload: check first
		// (see PutRequest::if_none_match for the race this leaves).
		bool exists = true;
		try {
			(void)Head(ObjectRef{req.bucket, req.key, {}}, probe);
		} catch (const Error &e) {
			if (e.kind() != ErrorKind::kNotFound)
				throw;
			exists = false;
		}
		if (exists)
			throw Error(ErrorKind::kExists, sqlstate::kDuplicateObject, "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"",
			            "An object exists at this key already, and objects are never replaced.");
	}
	MultipartUpload upload(*this, config_, engine_, signer_, req, probe);
	upload.Create();
	try {
		upload.CheckCreated();
		upload.UploadParts();
		PutResult result = upload.Complete();
		result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
		return result;
	} catch (const Error &e) {
		const std::string why = upload.Abort();
		if (why.empty())
			throw;
		throw Error(e.kind(), e.sqlstate(), e.what(),
		            e.detail() + " The multipart upload could not be aborted (" + why +
		                "); it stays incomplete until it is aborted or a lifecycle rule "
		                "(AbortIncompleteMultipartUpload) removes it.",
		            e.hint());
	} catch (...) {
		upload.Abort();
		throw;
	}
}

} // namespace reportstore::s3
