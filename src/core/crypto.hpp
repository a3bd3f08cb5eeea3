// Hashes and MACs over OpenSSL 3's EVP interface.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace reportstore::crypto {

using Sha256Digest = std::array<std::uint8_t, 32>;
using Md5Digest = std::array<std::uint8_t, 16>;

Sha256Digest Sha256(std::string_view data);
Sha256Digest HmacSha256(std::string_view key, std::string_view data);
Md5Digest Md5(std::string_view data);

std::string HexEncode(const std::uint8_t *data, std::size_t len); // lowercase
template <std::size_t N> std::string HexEncode(const std::array<std::uint8_t, N> &digest) {
	return HexEncode(digest.data(), digest.size());
}
std::string Base64Encode(std::string_view data);

// SHA-256 and MD5 of a payload computed in a single pass over the bytes:
// uploads need both (x-amz-content-sha256 and the ETag check) and reports can
// be large, so read them once.
struct PayloadDigests {
	std::string sha256_hex;
	std::string md5_hex;
	std::string md5_base64;
};
PayloadDigests DigestPayload(std::string_view data);

// Hex SHA-256 of the empty string, used by every request without a body.
inline constexpr const char *kEmptySha256Hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

} // namespace reportstore::crypto
