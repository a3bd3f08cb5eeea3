// Checks of uploads. See verify.hpp.
#include "core/s3/verify.hpp"

#include "core/s3/errors.hpp"
#include "core/s3/xml.hpp"
#include "core/strings.hpp"

namespace reportstore::s3 {

namespace {

bool IsKms(const std::string &sse) {
	return strings::StartsWith(strings::Lower(sse), "aws:kms");
}

} // namespace

bool EtagIsOpaque(const PutRequest &req, const http::Response &resp) {
	const std::string *sse = resp.Header("x-amz-server-side-encryption");
	return (sse && IsKms(*sse)) || IsKms(req.sse) ||
	       resp.Header("x-amz-server-side-encryption-customer-algorithm") != nullptr;
}

void CheckStoredObject(const PutRequest &req, const ObjectInfo &info, const std::string &sha256_hex) {
	if (info.size != req.body.size())
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     "The stored object has " + std::to_string(info.size) + " bytes, " +
		                         std::to_string(req.body.size()) + " were sent.");
	const std::string *sha = info.Meta(kSha256MetaKey);
	if (!sha)
		throw IntegrityError("uploaded", req.bucket, req.key, "The stored object has no SHA-256 metadata.");
	if (strings::Lower(*sha) != sha256_hex)
		throw IntegrityError("uploaded", req.bucket, req.key,
		                     "The stored object's SHA-256 metadata is " + ServerText(*sha) + ", the body's is " +
		                         sha256_hex + ".");
}

Error UploadError(const PutRequest &req, const http::Response &resp) {
	Error e = ErrorFromResponse(resp, "upload", req.bucket, req.key);
	ErrorBody body;
	if (req.storage_class.empty() || resp.transport != http::TransportStatus::kOk || resp.status != 400 ||
	    !ParseErrorBody(resp.body, &body) || (body.code != "InvalidStorageClass" && body.code != "InvalidArgument"))
		return e;
	return Error(e.kind(), e.sqlstate(), e.what(),
	             e.detail() + "; the upload asked for storage class " + ServerText(req.storage_class),
	             "Check reportstore.storage_class: the S3 server may not offer storage class \"" +
	                 ServerText(req.storage_class) + "\".");
}

void CheckSseS3Confirmed(const PutRequest &req, const http::Response &resp, const char *step) {
	if (req.sse != "AES256")
		return;
	const std::string *got = resp.Header("x-amz-server-side-encryption");
	if (got && *got == "AES256")
		return;
	throw Error(ErrorKind::kConfig, "0A000", "could not upload object \"" + ObjectName(req.bucket, req.key) + "\"",
	            std::string(step) + ": the S3 server did not confirm server-side encryption AES256 (" +
	                (got ? "it answered x-amz-server-side-encryption: " + ServerText(*got)
	                     : std::string("no x-amz-server-side-encryption header in its answer")) +
	                "); the object may be stored unencrypted.",
	            "The S3 server may not support reportstore.sse = 'AES256' (SSE-S3); use 'aws:kms' or clear "
	            "reportstore.sse.");
}

} // namespace reportstore::s3
