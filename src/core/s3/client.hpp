// The S3 client: object operations (PUT, GET, HEAD, DELETE, presigned GET),
// multipart uploads, listing and lifecycle, signed with SigV4, with integrity
// checks on both directions.
//
// One capability per file: objects.cpp, multipart.cpp, bucket.cpp implement
// the members; request.hpp (targets, signing), errors.hpp (classification of
// failures), verify.hpp (checks of uploads) and xml.hpp (bodies) serve them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/aws/credentials.hpp"
#include "core/aws/sigv4.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/http/engine.hpp"
#include "core/s3/xml.hpp"
#include "core/uri.hpp"

namespace reportstore::s3 {

enum class UrlStyle { kPath, kVirtual };

struct Config {
	uri::Endpoint endpoint;
	std::string region = "us-east-1";
	UrlStyle url_style = UrlStyle::kPath;
	aws::Credentials credentials;
	// When set, every request is signed with the provider's credentials at
	// the time it is signed (temporary credentials, refreshed), and
	// `credentials` is not used.
	aws::CredentialsProviderPtr credentials_provider;
	http::Timeouts timeouts;
	// Put and PutMany send bodies larger than multipart_threshold bytes as a
	// multipart upload of part_size-byte parts (raised to S3's 5 MiB minimum,
	// and so that there are at most 10,000 parts), part_concurrency of them
	// in flight at once (at least 1).
	std::uint64_t multipart_threshold = 64u << 20;
	std::uint64_t part_size = 16u << 20;
	int part_concurrency = 4;
};

// Incomplete multipart uploads older than this are aborted by the lifecycle
// rule reportstore.set_lifecycle() installs (an upload takes minutes).
inline constexpr int kAbortIncompleteDays = 1;

// S3's smallest part (all but the last) and largest number of parts.
inline constexpr std::uint64_t kMinPartSize = 5u << 20;
inline constexpr std::uint64_t kMaxParts = 10000;

// Metadata key (without "x-amz-meta-") holding the hex SHA-256 of the body.
inline constexpr const char *kSha256MetaKey = "sha256";
// Metadata key naming the writer (a database's store identity, a UUID) that
// uploaded the object: only that database deletes it.
inline constexpr const char *kWriterMetaKey = "reportstore-writer";

struct ObjectRef {
	std::string bucket;
	std::string key;
	std::string version_id; // empty = latest
};

struct PutRequest {
	std::string bucket;
	std::string key;
	std::string_view body; // not copied; must outlive the call
	std::string content_type = "application/json";
	std::string content_encoding; // e.g. "gzip"; empty = none
	std::string storage_class;    // x-amz-storage-class; empty = bucket default; [A-Za-z0-9_-]{1,64}
	std::string sse;              // x-amz-server-side-encryption: "" (bucket default), "AES256" or "aws:kms"
	std::string sse_kms_key_id;   // x-amz-server-side-encryption-aws-kms-key-id; only with sse "aws:kms"
	http::Headers metadata;       // user metadata, names without "x-amz-meta-"
	// Never replace an existing object: the PUT carries If-None-Match: *, and
	// an object at the key fails it with kExists (HTTP 412). A multipart
	// upload checks with a HEAD before it starts instead (S3 servers differ on
	// conditional CompleteMultipartUpload), so a concurrent writer of the same
	// key between the HEAD and the completion is not detected there.
	bool if_none_match = false;
};

struct PutResult {
	std::string etag;       // without quotes
	std::string version_id; // empty when the bucket is not versioned
	std::string sha256_hex;
	std::uint64_t size = 0;
	double seconds = 0;
};

struct ObjectInfo {
	std::uint64_t size = 0;
	std::string etag;
	std::string version_id;
	std::string content_type;
	std::string content_encoding;
	http::Headers metadata; // names lowercase, without "x-amz-meta-"
	const std::string *Meta(std::string_view name) const;
};

// Result of one PUT in a batch: either result or error is set.
struct PutOutcome {
	std::optional<PutResult> result;
	std::optional<Error> error;
	bool not_sent = false; // never tried (see UploadPipeline): the report is not to blame
};

// One download of GetMany: the object and what its bytes must be (see Get).
struct GetRequest {
	ObjectRef ref;
	std::string expected_sha256_hex; // empty: the object's kSha256MetaKey metadata
	std::int64_t expected_size = -1;
};

// Result of one GET in GetMany: info and body, or error. Neither is set for
// a GET never started because another one failed first.
struct GetOutcome {
	std::optional<ObjectInfo> info;
	std::string body;
	std::optional<Error> error;
};

class Client {
  public:
	Client(Config config, http::Engine &engine, aws::Clock clock = aws::SystemClock());

	// Uploads the body with its SHA-256 signed (x-amz-content-sha256), sent as
	// metadata (kSha256MetaKey) and Content-MD5, then checks the returned ETag
	// against the MD5. Throws reportstore::Error.
	//
	// A body larger than config().multipart_threshold goes as a multipart
	// upload instead: CreateMultipartUpload (same headers as the PUT, no
	// Content-MD5), the parts concurrently straight from slices of the body
	// (each with its own signed SHA-256 and Content-MD5, its ETag checked
	// against its MD5), CompleteMultipartUpload, then the object is checked:
	// its ETag against the multipart ETag computed locally, its size and
	// SHA-256 metadata with a HEAD. On any failure, interruption included,
	// the upload is aborted (AbortMultipartUpload, best effort) before the
	// error is thrown. A failed part starts no new part, and the abort waits
	// for the parts in flight to end (S3 may otherwise store one after the
	// abort); an interruption cuts them short, then aborts.
	PutResult Put(const PutRequest &req, const http::InterruptProbe &probe) const;

	// Uploads many objects concurrently on the engine's pooled connections.
	// Never throws for per-object failures; they are in the outcomes. Bodies
	// larger than config().multipart_threshold go as multipart uploads (see
	// Put), one object at a time after the others, each with its parts
	// concurrent.
	std::vector<PutOutcome> PutMany(const std::vector<PutRequest> &reqs, int max_concurrency,
	                                const http::InterruptProbe &probe) const;

	// A PUT in two steps, for callers that drive the transfers themselves
	// (UploadPipeline): the signed request with the body's digests...
	struct PreparedPut {
		http::Request request;
		crypto::PayloadDigests digests;
	};
	PreparedPut PreparePut(const PutRequest &req) const;
	// ...and the check of its answer (as Put does). When the ETag is not the
	// body's MD5 (SSE-KMS...) the stored object must be read with a HEAD: with
	// head_probe null the result is empty and the caller asks again later,
	// when the engine is free, with a probe. Throws reportstore::Error.
	std::optional<PutResult> CheckPutAnswer(const PutRequest &req, const crypto::PayloadDigests &digests,
	                                        const http::Response &resp, const http::InterruptProbe *head_probe) const;

	// Downloads into *body and checks the bytes against expected_sha256_hex
	// when given, else against the object's kSha256MetaKey metadata; a mismatch
	// throws kIntegrity. expected_size (if >= 0) sizes the timeout and buffer.
	ObjectInfo Get(const ObjectRef &ref, std::string *body, const http::InterruptProbe &probe,
	               const std::string &expected_sha256_hex = {}, std::int64_t expected_size = -1) const;

	// Downloads many objects concurrently (at most max_concurrency at once),
	// each checked as Get checks it, in the order given. Never throws for
	// per-object failures; they are in the outcomes, and after the first one
	// no further GET starts. All bodies are held until it returns: callers
	// bound the bytes they ask for at once.
	std::vector<GetOutcome> GetMany(const std::vector<GetRequest> &reqs, int max_concurrency,
	                                const http::InterruptProbe &probe) const;

	ObjectInfo Head(const ObjectRef &ref, const http::InterruptProbe &probe) const;
	void Delete(const ObjectRef &ref, const http::InterruptProbe &probe) const; // missing object is not an error

	// Presigned GET URL valid for `expires` (1 s .. 7 days).
	std::string PresignGet(const ObjectRef &ref, std::chrono::seconds expires) const;

	// One page of ListObjectsV2 (GET /bucket?list-type=2...). prefix and
	// continuation_token are sent when not empty, max_keys when > 0 (else the
	// server's default, 1000). Throws reportstore::Error.
	ListPage List(const std::string &bucket, const std::string &prefix, const std::string &continuation_token,
	              int max_keys, const http::InterruptProbe &probe) const;

	// The bucket's lifecycle configuration XML (GET /bucket?lifecycle), or ""
	// when the bucket has none (404 NoSuchLifecycleConfiguration). Parse it
	// with ParseLifecycleRules. Throws reportstore::Error.
	std::string GetBucketLifecycle(const std::string &bucket, const http::InterruptProbe &probe) const;

	// Sets the bucket's lifecycle configuration (PUT /bucket?lifecycle) to a
	// single enabled rule rule_id expiring objects under prefix after days
	// (>= 1) days and aborting multipart uploads under it left incomplete for
	// kAbortIncompleteDays days. This REPLACES the whole configuration: other
	// rules are dropped. Throws reportstore::Error (kConfig, 22023 for invalid
	// arguments).
	void PutBucketLifecycleExpiry(const std::string &bucket, const std::string &prefix, int days,
	                              const std::string &rule_id, const http::InterruptProbe &probe) const;

	// Body of PutBucketLifecycleExpiry (exposed for tests).
	static std::string LifecycleExpiryXml(const std::string &prefix, int days, const std::string &rule_id);

	// One page of ListMultipartUploads (GET /bucket?uploads) under prefix,
	// after the markers of the previous page (empty for the first), at most
	// max_uploads (> 0) uploads. Throws reportstore::Error.
	UploadsPage ListIncompleteUploads(const std::string &bucket, const std::string &prefix,
	                                  const std::string &key_marker, const std::string &upload_id_marker,
	                                  int max_uploads, const http::InterruptProbe &probe) const;

	// AbortMultipartUpload of an upload found by ListIncompleteUploads; an
	// upload already gone is not an error. Throws reportstore::Error.
	void AbortUpload(const std::string &bucket, const std::string &key, const std::string &upload_id,
	                 const http::InterruptProbe &probe) const;

	// Whether the S3 server answers at all (HEAD of the bucket, short
	// timeouts): any HTTP answer counts, even an error. For a worker waiting
	// for an endpoint that stopped answering. Never throws.
	bool Answers(const std::string &bucket, const http::InterruptProbe &probe) const noexcept;

	// Size of each part (the last one may be smaller) of a multipart upload
	// of `size` bytes under this configuration.
	std::uint64_t PartSizeFor(std::uint64_t size) const;

	// The ETag S3 gives a multipart object: hex MD5 of the concatenated
	// binary MD5s of the parts (given in hex), "-", the number of parts.
	static std::string MultipartEtag(const std::vector<std::string> &part_md5_hex);

	// URL of an object (path-style or virtual-hosted) without query string.
	std::string ObjectUrl(const std::string &bucket, const std::string &key) const;

	const Config &config() const {
		return config_;
	}
	http::Engine &engine() const {
		return engine_;
	}

  private:
	http::Request BuildPut(const PutRequest &req, const crypto::PayloadDigests &digests) const;
	http::Request ObjectRequest(const char *method, const ObjectRef &ref) const;
	http::Request BuildGet(const ObjectRef &ref, std::int64_t expected_size) const;
	ObjectInfo CheckGetAnswer(const ObjectRef &ref, http::Response &resp, std::string *body,
	                          const std::string &expected_sha256_hex, std::int64_t expected_size) const;
	PutResult PutMultipart(const PutRequest &req, const http::InterruptProbe &probe) const;

	Config config_;
	http::Engine &engine_;
	aws::Signer signer_;
};

} // namespace reportstore::s3
