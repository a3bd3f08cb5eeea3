// AWS Signature Version 4 for S3 (header and query-string authentication).
//
// The signer is pure: it takes a description of the request and returns the
// headers (or query parameters) to add. Time comes from an injected clock so
// tests are deterministic.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/crypto.hpp"
#include "core/http/headers.hpp"

namespace reportstore::aws {

using http::Header;
using http::Headers;
using QueryParam = std::pair<std::string, std::string>; // raw, not yet URI-encoded
using QueryParams = std::vector<QueryParam>;

// Seconds since the Unix epoch, UTC.
using Clock = std::function<std::time_t()>;
Clock SystemClock();

struct Credentials {
	std::string access_key_id;
	std::string secret_access_key;
	std::string session_token; // empty unless temporary credentials
	bool Empty() const {
		return access_key_id.empty() || secret_access_key.empty();
	}
};

// What the signer needs to know about a request.
struct RequestToSign {
	std::string method;       // "GET", "PUT", ...
	std::string host;         // value of the Host header: "host" or "host:port"
	std::string path;         // raw (decoded) absolute path, e.g. "/bucket/reports/x y.json"
	QueryParams query;        // raw names and values
	Headers headers;          // other headers to sign (any case, untrimmed values allowed)
	std::string payload_hash; // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

// Pieces of the algorithm, exposed for the test vectors.
std::string CanonicalUri(const std::string &raw_path);                             // S3 rules: encode once, keep '/'
std::string CanonicalQueryString(const QueryParams &query);                        // sorted by encoded name, then value
std::string CanonicalHeaders(const Headers &headers, std::string *signed_headers); // lowercased, trimmed, sorted
std::string CanonicalRequest(const RequestToSign &req, std::string *signed_headers);
std::string AmzDate(std::time_t t);   // 20150830T123600Z
std::string ShortDate(std::time_t t); // 20150830
std::string CredentialScope(std::time_t t, const std::string &region, const std::string &service);
std::string StringToSign(std::time_t t, const std::string &scope, const std::string &canonical_request);
crypto::Sha256Digest DeriveSigningKey(const std::string &secret, const std::string &short_date,
                                      const std::string &region, const std::string &service);

class CredentialsProvider; // credentials.hpp

class Signer {
  public:
	// Always these credentials (long-lived keys).
	Signer(Credentials credentials, std::string region, std::string service = "s3", Clock clock = SystemClock());
	// The provider's credentials at the time of each signature (temporary
	// credentials that are refreshed): a request is signed with the
	// credentials current when it is signed. Sign and Presign throw what
	// the provider throws.
	Signer(std::shared_ptr<CredentialsProvider> provider, std::string region, std::string service = "s3",
	       Clock clock = SystemClock());

	// Header authentication. Returns the headers to add to the request:
	// x-amz-date, x-amz-content-sha256, x-amz-security-token (with a session
	// token) and Authorization. The host header and req.headers are signed.
	Headers Sign(const RequestToSign &req) const;

	// Query-string authentication (presigned URL). Returns the full query
	// string (already encoded, without '?') to append to the URL; req.query is
	// included. The payload is UNSIGNED-PAYLOAD. expires is 1 s .. 7 days.
	std::string Presign(const RequestToSign &req, std::chrono::seconds expires) const;

	const std::string &region() const {
		return region_;
	}
	// How many times a signing key was derived (cache misses); for tests.
	std::uint64_t key_derivations() const {
		std::lock_guard<std::mutex> lock(cache_mutex_);
		return key_derivations_;
	}

  private:
	crypto::Sha256Digest SigningKey(const std::string &secret, const std::string &short_date) const;

	std::shared_ptr<CredentialsProvider> provider_;
	std::string region_;
	std::string service_;
	Clock clock_;
	// The signing key only changes with the date and the secret: cache it.
	mutable std::mutex cache_mutex_;
	mutable std::string cached_date_;
	mutable crypto::Sha256Digest cached_secret_digest_{}; // which secret the key is for (never the secret itself)
	mutable crypto::Sha256Digest cached_key_{};
	mutable std::uint64_t key_derivations_ = 0;
};

} // namespace reportstore::aws
