// URL, endpoint, bucket and object-key helpers.
#pragma once

#include <string>
#include <vector>
#include <string_view>

namespace reportstore::uri {

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters
// (A-Z a-z 0-9 - . _ ~) are kept, everything else is %XX (uppercase), and
// '/' is kept unless encode_slash.
std::string UriEncode(std::string_view s, bool encode_slash);

// A parsed S3 endpoint such as "https://minio.example.com:9000" or
// "http://127.0.0.1:9000". Throws reportstore::Error (kConfig, 22023) on:
// a scheme other than http/https, user info (credentials) in the URL, an empty
// host, a bad port, a query or fragment, or a path other than "/" or empty.
struct Endpoint {
	std::string scheme; // "http" or "https"
	std::string host;   // without brackets for IPv6
	int port = 0;       // explicit or the scheme's default
	bool explicit_port = false;
	bool ipv6 = false;

	// "host" or "host:port" as sent in the Host header (port omitted when default).
	std::string HostHeader() const;
	// "scheme://host[:port]"
	std::string Origin() const;
};
Endpoint ParseEndpoint(std::string_view url);

// S3 bucket naming rules (3-63 chars, lowercase letters, digits, '.', '-',
// starts and ends with a letter or digit, not an IP address, no "..").
bool IsValidBucketName(std::string_view bucket);

// "s3://bucket/key" -> bucket, key. Returns false when malformed.
struct S3Location {
	std::string bucket;
	std::string key;
	std::string ToUri() const; // "s3://bucket/key"
};
bool ParseS3Uri(std::string_view uri, S3Location *out);

// A comma-separated list of bucket names (spaces around names ignored, empty
// list allowed). False when a name is not a valid bucket name; *out (if not
// null) gets the names.
bool ParseBucketList(std::string_view list, std::vector<std::string> *out);

// Object key of a report: "reports/{report_id}/report.{format}". report_id must
// be a canonical lowercase UUID and format a lowercase [a-z0-9_]+ word; throws
// reportstore::Error (22023) otherwise, so a key can never contain "..", '/'
// or anything a hostile value could smuggle in.
std::string ReportObjectKey(std::string_view report_id, std::string_view format);

// Objects are immutable: a report's first object has the seed's key
// (ReportObjectKey), and every later one (new content, an upload whose key was
// taken, a copy made by reportstore.fork()) gets a key of its own,
// "reports/{report_id}/{generation}/report.{format}". A generation is 24
// lowercase hex digits: the upload's time in seconds since 1970 (8 digits, so
// generations sort by age) followed by 64 random bits (16 digits). Validates
// report_id and format as ReportObjectKey does, and the generation.
std::string ReportGenerationKey(std::string_view report_id, std::string_view format, std::string_view generation);

// A new generation: `seconds` since 1970 and 64 random bits (from OpenSSL's
// RAND_bytes). Throws reportstore::Error when no random bytes can be had.
std::string NewGeneration(long long seconds);

// True when key is one of this report's keys: the seed's key or a generation
// key (any valid generation).
bool IsReportKey(std::string_view key, std::string_view report_id, std::string_view format);

} // namespace reportstore::uri
