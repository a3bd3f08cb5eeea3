// S3 XML bodies: parsing with libxml2 (no network access, no entities,
// bounded input) and the two small documents the client sends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace reportstore::s3 {

struct ErrorBody {
	std::string code; // e.g. "NoSuchBucket"
	std::string message;
	std::string resource;
	std::string request_id;
	std::string bucket_name;
	std::string key;
};

// Returns false if the body is not a well-formed <Error> document.
bool ParseErrorBody(std::string_view xml, ErrorBody *out);

// ListObjectsV2 (for orphan scans).
struct ListedObject {
	std::string key;
	std::uint64_t size = 0;
	std::string etag;
	std::string last_modified;
};
struct ListPage {
	std::vector<ListedObject> objects;
	bool is_truncated = false;
	std::string next_continuation_token;
};
// Throws reportstore::Error (kProtocol, 08P01) on malformed XML.
ListPage ParseListObjectsV2(std::string_view xml);

// One rule of a bucket lifecycle configuration (GetBucketLifecycleConfiguration).
struct LifecycleRule {
	std::string id;
	std::string prefix;            // Filter/Prefix, Filter/And/Prefix or the legacy Rule/Prefix; "" = whole bucket
	std::string status;            // "Enabled" or "Disabled", as sent
	int expiration_days = 0;       // Expiration/Days; 0 when the rule has no day-based expiration
	int abort_incomplete_days = 0; // AbortIncompleteMultipartUpload/DaysAfterInitiation; 0 when none
};
// Parses a LifecycleConfiguration document. Elements are matched by local
// name whatever their namespace (S3's, none, or another). An empty string
// (no configuration) gives no rules. Throws reportstore::Error (kProtocol,
// 08P01) on malformed XML, another root element or an invalid Days value.
std::vector<LifecycleRule> ParseLifecycleRules(std::string_view xml);

// ListMultipartUploads: multipart uploads started and neither completed nor
// aborted.
struct IncompleteUpload {
	std::string key;
	std::string upload_id;
	std::string initiated; // ISO 8601, as sent
};
struct UploadsPage {
	std::vector<IncompleteUpload> uploads;
	bool is_truncated = false;
	std::string next_key_marker;
	std::string next_upload_id_marker;
};
// Throws reportstore::Error (kProtocol, 08P01) on malformed XML, an Upload
// without Key or UploadId, or a truncated page without its next markers.
UploadsPage ParseListMultipartUploads(std::string_view xml);

// The UploadId of an InitiateMultipartUploadResult (CreateMultipartUpload).
// Elements are matched by local name whatever their namespace; leading
// whitespace is skipped. Throws reportstore::Error (kProtocol, 08P01) on
// malformed XML, another root element, or a missing, empty, over-long
// (> 1024 bytes) or non-printable UploadId.
std::string ParseInitiateMultipartUpload(std::string_view xml);

// Body of a CompleteMultipartUpload response. S3 may answer 200 and still
// fail: the body is then an <Error> document (is_error, error filled in).
// Leading whitespace (S3's keep-alive padding while it assembles the object)
// is skipped; elements are matched by local name whatever their namespace.
struct CompleteMultipartUploadResult {
	bool is_error = false;
	ErrorBody error; // when is_error
	std::string location;
	std::string bucket;
	std::string key;
	std::string etag; // without quotes; empty when the server sent none (Ceph RGW 16)
};
// The root is CompleteMultipartUploadResult (S3) or
// CompleteMultipartUploadResponse (moto). Throws reportstore::Error
// (kProtocol, 08P01) on malformed XML or another root element.
CompleteMultipartUploadResult ParseCompleteMultipartUpload(std::string_view xml);

// --- Writing -----------------------------------------------------------------

// True when s can be character data in XML 1.0: no control character other
// than tab, LF and CR.
bool XmlSafe(std::string_view s);

// s as XML character data; the caller checked XmlSafe.
std::string XmlEscape(std::string_view s);

// Body of CompleteMultipartUpload: parts 1..n with these ETags (unquoted,
// XmlSafe).
std::string CompleteMultipartUploadXml(const std::vector<std::string> &etags);

// Body of PutBucketLifecycleConfiguration: one enabled rule expiring the
// objects under prefix after days days and aborting the multipart uploads
// under it left incomplete for abort_days days. Arguments are not checked.
std::string LifecycleExpiryDocument(const std::string &prefix, int days, int abort_days, const std::string &rule_id);

} // namespace reportstore::s3
