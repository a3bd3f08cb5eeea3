#include "core/aws/sigv4.hpp"

#include <algorithm>

#include "core/aws/credentials.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"
#include "core/uri.hpp"

namespace reportstore::aws {

namespace {

constexpr const char *kAlgorithm = "AWS4-HMAC-SHA256";
constexpr const char *kUnsignedPayload = "UNSIGNED-PAYLOAD";
constexpr std::int64_t kMaxPresignSeconds = 7 * 24 * 3600;

// Trim and collapse runs of blanks to one space, as SigV4 asks.
std::string NormalizeValue(std::string_view v) {
	std::string out;
	out.reserve(v.size());
	bool pending_space = false;
	for (char c : v) {
		if (strings::IsBlank(c)) {
			pending_space = !out.empty();
			continue;
		}
		if (pending_space)
			out.push_back(' ');
		pending_space = false;
		out.push_back(c);
	}
	return out;
}

std::string HeaderName(std::string_view name) {
	return strings::Lower(NormalizeValue(name));
}

std::string FormatTime(std::time_t t, const char *format) {
	std::tm tm{};
	gmtime_r(&t, &tm);
	char buf[32];
	std::size_t n = std::strftime(buf, sizeof(buf), format, &tm);
	return std::string(buf, n);
}

std::string_view AsBytes(const crypto::Sha256Digest &d) {
	return std::string_view(reinterpret_cast<const char *>(d.data()), d.size());
}

// Headers the signer sets itself; a caller's copy would be signed twice.
bool IsSignerHeader(const std::string &lower_name) {
	return lower_name == "host" || lower_name == "authorization" || lower_name == "x-amz-date" ||
	       lower_name == "x-amz-content-sha256" || lower_name == "x-amz-security-token";
}

Headers CallerHeaders(const Headers &headers) {
	Headers out;
	for (const auto &h : headers)
		if (!IsSignerHeader(HeaderName(h.first)))
			out.push_back(h);
	return out;
}

} // namespace

Clock SystemClock() {
	return [] { return std::time(nullptr); };
}

std::string CanonicalUri(const std::string &raw_path) {
	if (raw_path.empty())
		return "/";
	// S3 signs the path as sent: each segment encoded once, no dot-segment removal.
	return uri::UriEncode(raw_path, false);
}

std::string CanonicalQueryString(const QueryParams &query) {
	std::vector<std::pair<std::string, std::string>> encoded;
	encoded.reserve(query.size());
	for (const auto &[name, value] : query)
		encoded.emplace_back(uri::UriEncode(name, true), uri::UriEncode(value, true));
	std::sort(encoded.begin(), encoded.end());
	std::string out;
	for (const auto &[name, value] : encoded) {
		if (!out.empty())
			out.push_back('&');
		out += name;
		out.push_back('=');
		out += value;
	}
	return out;
}

std::string CanonicalHeaders(const Headers &headers, std::string *signed_headers) {
	std::vector<std::pair<std::string, std::string>> lowered;
	lowered.reserve(headers.size());
	for (const auto &[name, value] : headers)
		lowered.emplace_back(HeaderName(name), NormalizeValue(value));
	// Stable: repeated headers keep their order when their values are joined.
	std::stable_sort(lowered.begin(), lowered.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
	std::string out;
	std::string names;
	for (std::size_t i = 0; i < lowered.size(); i++) {
		if (i > 0 && lowered[i].first == lowered[i - 1].first) {
			out.back() = ','; // replaces the previous line's '\n'
			out += lowered[i].second;
			out.push_back('\n');
			continue;
		}
		if (!names.empty())
			names.push_back(';');
		names += lowered[i].first;
		out += lowered[i].first;
		out.push_back(':');
		out += lowered[i].second;
		out.push_back('\n');
	}
	if (signed_headers != nullptr)
		*signed_headers = std::move(names);
	return out;
}

std::string CanonicalRequest(const RequestToSign &req, std::string *signed_headers) {
	// The host header always comes from req.host, whatever req.headers says.
	Headers headers;
	headers.reserve(req.headers.size() + 1);
	headers.emplace_back("host", req.host);
	for (const auto &h : req.headers)
		if (HeaderName(h.first) != "host")
			headers.push_back(h);
	std::string names;
	std::string canonical_headers = CanonicalHeaders(headers, &names);
	std::string out = req.method + "\n" + CanonicalUri(req.path) + "\n" + CanonicalQueryString(req.query) + "\n" +
	                  canonical_headers + "\n" + names + "\n" + req.payload_hash;
	if (signed_headers != nullptr)
		*signed_headers = std::move(names);
	return out;
}

std::string AmzDate(std::time_t t) {
	return FormatTime(t, "%Y%m%dT%H%M%SZ");
}

std::string ShortDate(std::time_t t) {
	return FormatTime(t, "%Y%m%d");
}

std::string CredentialScope(std::time_t t, const std::string &region, const std::string &service) {
	return ShortDate(t) + "/" + region + "/" + service + "/aws4_request";
}

std::string StringToSign(std::time_t t, const std::string &scope, const std::string &canonical_request) {
	return std::string(kAlgorithm) + "\n" + AmzDate(t) + "\n" + scope + "\n" +
	       crypto::HexEncode(crypto::Sha256(canonical_request));
}

crypto::Sha256Digest DeriveSigningKey(const std::string &secret, const std::string &short_date,
                                      const std::string &region, const std::string &service) {
	crypto::Sha256Digest k = crypto::HmacSha256("AWS4" + secret, short_date);
	k = crypto::HmacSha256(AsBytes(k), region);
	k = crypto::HmacSha256(AsBytes(k), service);
	return crypto::HmacSha256(AsBytes(k), "aws4_request");
}

Signer::Signer(Credentials credentials, std::string region, std::string service, Clock clock)
    : Signer(FixedCredentials(std::move(credentials)), std::move(region), std::move(service), std::move(clock)) {}

Signer::Signer(std::shared_ptr<CredentialsProvider> provider, std::string region, std::string service, Clock clock)
    : provider_(std::move(provider)), region_(std::move(region)), service_(std::move(service)),
      clock_(clock ? std::move(clock) : SystemClock()) {
	if (!provider_)
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "signer without credentials");
}

crypto::Sha256Digest Signer::SigningKey(const std::string &secret, const std::string &short_date) const {
	const crypto::Sha256Digest secret_digest = crypto::Sha256(secret);
	std::lock_guard<std::mutex> lock(cache_mutex_);
	if (cached_date_ != short_date || cached_secret_digest_ != secret_digest) {
		cached_key_ = DeriveSigningKey(secret, short_date, region_, service_);
		cached_date_ = short_date;
		cached_secret_digest_ = secret_digest;
		key_derivations_++;
	}
	return cached_key_;
}

Headers Signer::Sign(const RequestToSign &req) const {
	if (req.payload_hash.empty())
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "request to sign has no payload hash");
	const Credentials credentials = provider_->Current();
	const std::time_t now = clock_();

	Headers added;
	added.emplace_back("x-amz-date", AmzDate(now));
	added.emplace_back("x-amz-content-sha256", req.payload_hash);
	if (!credentials.session_token.empty())
		added.emplace_back("x-amz-security-token", credentials.session_token);

	RequestToSign to_sign{req.method, req.host, req.path, req.query, CallerHeaders(req.headers), req.payload_hash};
	to_sign.headers.insert(to_sign.headers.end(), added.begin(), added.end());

	std::string signed_headers;
	const std::string creq = CanonicalRequest(to_sign, &signed_headers);
	const std::string scope = CredentialScope(now, region_, service_);
	const crypto::Sha256Digest key = SigningKey(credentials.secret_access_key, ShortDate(now));
	const std::string signature = crypto::HexEncode(crypto::HmacSha256(AsBytes(key), StringToSign(now, scope, creq)));

	added.emplace_back("Authorization", std::string(kAlgorithm) + " Credential=" + credentials.access_key_id + "/" +
	                                        scope + ", SignedHeaders=" + signed_headers + ", Signature=" + signature);
	return added;
}

std::string Signer::Presign(const RequestToSign &req, std::chrono::seconds expires) const {
	if (expires.count() < 1 || expires.count() > kMaxPresignSeconds)
		throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
		            "presigned URL lifetime must be between 1 second and 7 days",
		            "The requested lifetime is " + std::to_string(expires.count()) + " seconds.");
	const Credentials credentials = provider_->Current();
	const std::time_t now = clock_();
	const std::string scope = CredentialScope(now, region_, service_);

	RequestToSign to_sign{req.method, req.host, req.path, req.query, CallerHeaders(req.headers), kUnsignedPayload};
	std::string signed_headers;
	Headers signed_set = to_sign.headers;
	signed_set.emplace_back("host", req.host);
	CanonicalHeaders(signed_set, &signed_headers);

	to_sign.query.emplace_back("X-Amz-Algorithm", kAlgorithm);
	to_sign.query.emplace_back("X-Amz-Credential", credentials.access_key_id + "/" + scope);
	to_sign.query.emplace_back("X-Amz-Date", AmzDate(now));
	to_sign.query.emplace_back("X-Amz-Expires", std::to_string(expires.count()));
	to_sign.query.emplace_back("X-Amz-SignedHeaders", signed_headers);
	// S3 wants the token inside the signed query, not appended afterwards.
	if (!credentials.session_token.empty())
		to_sign.query.emplace_back("X-Amz-Security-Token", credentials.session_token);

	const std::string creq = CanonicalRequest(to_sign, nullptr);
	const crypto::Sha256Digest key = SigningKey(credentials.secret_access_key, ShortDate(now));
	const std::string signature = crypto::HexEncode(crypto::HmacSha256(AsBytes(key), StringToSign(now, scope, creq)));
	return CanonicalQueryString(to_sign.query) + "&X-Amz-Signature=" + signature;
}

} // namespace reportstore::aws
