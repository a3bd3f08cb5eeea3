// Classification of failed S3 exchanges. See errors.hpp.
#include "core/s3/errors.hpp"

#include "core/s3/xml.hpp"
#include "core/strings.hpp"

namespace reportstore::s3 {

namespace {

// SQLSTATEs not in error.hpp's list.
constexpr const char *kSqlUnableToConnect = "08001";      // sqlclient_unable_to_establish_sqlconnection
constexpr const char *kSqlInvalidAuthorization = "28000"; // invalid_authorization_specification
constexpr const char *kSqlUndefinedFile = "58P01";        // undefined_file
constexpr const char *kSqlProgramLimitExceeded = "54000";

constexpr std::size_t kMaxServerText = 300;

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
    {"TokenRefreshRequired", ErrorKind::kSystemic, kSqlInvalidAuthorization, "The session token must be refreshed."},
    {"AccessDenied", ErrorKind::kSystemic, sqlstate::kInsufficientPrivilege,
     "Check that reportstore.access_key_id and reportstore.secret_access_key are right (some servers, Ceph RGW "
     "among them, answer AccessDenied to a wrong secret) and that they may read and write the bucket "
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
    {"EntityTooLarge", ErrorKind::kClient, kSqlProgramLimitExceeded,
     "The object is larger than the S3 server accepts."},
    {"SlowDown", ErrorKind::kTransient, sqlstate::kIoError,
     "The S3 server asks to reduce the request rate; retry later."},
    {"ServiceUnavailable", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"InternalError", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"RequestTimeout", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    {"OperationAborted", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
    // If-None-Match: * refused: an object exists at the key already. Objects
    // are never replaced; the caller writes under a key of its own instead.
    {"PreconditionFailed", ErrorKind::kExists, sqlstate::kDuplicateObject, ""},
    // AWS: another conditional write to the same key is in progress.
    {"ConditionalRequestConflict", ErrorKind::kTransient, sqlstate::kIoError, "Retry later."},
};

// ErrorFromResponse with the whole message given (bucket-level operations).
Error ErrorWithMessage(const http::Response &resp, const std::string &message) {
	using http::TransportStatus;
	if (resp.transport != TransportStatus::kOk) {
		const std::string why = ServerText(resp.transport_error);
		switch (resp.transport) {
		case TransportStatus::kTimeout:
			return Error(ErrorKind::kTransient, sqlstate::kIoError, message, "The S3 request timed out: " + why,
			             "Check that the S3 server at reportstore.endpoint is reachable and not overloaded.")
			    .MarkNoAnswer();
		case TransportStatus::kConnectFailed:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message,
			             "Could not connect to the S3 server: " + why,
			             "Check reportstore.endpoint and that the S3 server is running.")
			    .MarkNoAnswer();
		case TransportStatus::kResolveFailed:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message,
			             "Could not resolve the S3 server's host name: " + why,
			             "Check the host name in reportstore.endpoint and the DNS configuration.");
		case TransportStatus::kTlsError:
			return Error(ErrorKind::kSystemic, kSqlUnableToConnect, message, "TLS error: " + why,
			             "Check the S3 server's certificate, reportstore.ca_file and reportstore.verify_tls.");
		case TransportStatus::kConnectionLost:
			return Error(ErrorKind::kTransient, sqlstate::kIoError, message,
			             "The connection to the S3 server was lost: " + why, "Retry later.")
			    .MarkNoAnswer();
		case TransportStatus::kInterrupted:
			return Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, message, "The transfer was interrupted.");
		case TransportStatus::kTooLarge:
			return Error(ErrorKind::kClient, kSqlProgramLimitExceeded, message, "The S3 response is too large: " + why);
		case TransportStatus::kNotSent: // the caller chose not to send it: a bug if it gets here
			return Error(ErrorKind::kInternal, sqlstate::kInternalError, message, "The request was not sent.");
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
		const std::string code = ServerText(body.code);
		std::string detail = "S3 error " + code + " (HTTP " + status + ")";
		if (!body.message.empty())
			detail += ": " + ServerText(body.message);
		if (!body.request_id.empty())
			detail += " (request id " + ServerText(body.request_id) + ")";
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
		if (resp.status == 412)
			return Error(ErrorKind::kExists, sqlstate::kDuplicateObject, message, detail);
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
	if (resp.status == 412)
		return Error(ErrorKind::kExists, sqlstate::kDuplicateObject, message, detail);
	if (resp.status >= 300 && resp.status < 400)
		return Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue, message, detail,
		             "The S3 server redirects the request; check reportstore.endpoint and reportstore.region.");
	return Error(ErrorKind::kClient, sqlstate::kIoError, message, detail);
}

} // namespace

std::string ServerText(std::string_view text) {
	return strings::Clean(text, kMaxServerText);
}

std::string ObjectName(const std::string &bucket, const std::string &key) {
	return "s3://" + bucket + "/" + key;
}

Error ErrorFromResponse(const http::Response &resp, const std::string &operation, const std::string &bucket,
                        const std::string &key) {
	return ErrorWithMessage(resp, "could not " + operation + " object \"" + ObjectName(bucket, key) + "\"");
}

Error IntegrityError(const std::string &what, const std::string &bucket, const std::string &key,
                     const std::string &detail) {
	return Error(ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
	             "integrity check failed for " + what + " object \"" + ObjectName(bucket, key) + "\"", detail,
	             "The bytes were not accepted. Retry the operation; if it keeps failing, check the S3 server and "
	             "anything between it and the database.");
}

// Bucket-level operations need other permissions than the object ones the
// generic AccessDenied hint lists.
Error BucketError(const http::Response &resp, const std::string &message, const char *permission) {
	Error e = ErrorWithMessage(resp, message);
	if (e.sqlstate() == sqlstate::kInsufficientPrivilege)
		return Error(e.kind(), e.sqlstate(), e.what(), e.detail(),
		             std::string("Check that reportstore.access_key_id and reportstore.secret_access_key are right "
		                         "(some servers answer AccessDenied to a wrong secret) and that they are allowed ") +
		                 permission + " on the bucket.");
	return e;
}

} // namespace reportstore::s3
