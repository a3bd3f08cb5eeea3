#include "core/crypto.hpp"

#include <algorithm>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/error.hpp"
#include "core/handle.hpp"
#include "core/interrupt.hpp"

namespace reportstore::crypto {

namespace {

using MdCtx = Handle<EVP_MD_CTX, EVP_MD_CTX_free>;

[[noreturn]] void Fail(const char *what) {
	throw Error(ErrorKind::kInternal, sqlstate::kInternalError, std::string("could not compute ") + what);
}

MdCtx NewDigestCtx(const EVP_MD *md, const char *name) {
	MdCtx ctx(EVP_MD_CTX_new());
	if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1)
		Fail(name);
	return ctx;
}

template <std::size_t N> std::array<std::uint8_t, N> Finish(EVP_MD_CTX *ctx, const char *name) {
	std::array<std::uint8_t, N> out{};
	unsigned int len = 0;
	if (EVP_DigestFinal_ex(ctx, out.data(), &len) != 1 || len != N)
		Fail(name);
	return out;
}

// One digest over data, asking the thread's interrupt probe between
// chunks: a large body must not make a statement_timeout wait.
template <std::size_t N> std::array<std::uint8_t, N> Digest(const EVP_MD *md, std::string_view data, const char *name) {
	MdCtx ctx = NewDigestCtx(md, name);
	for (std::size_t off = 0; off < data.size(); off += core::kInterruptCheckBytes) {
		core::ThrowIfInterrupted();
		const std::size_t n = std::min<std::size_t>(core::kInterruptCheckBytes, data.size() - off);
		if (EVP_DigestUpdate(ctx.get(), data.data() + off, n) != 1)
			Fail(name);
	}
	return Finish<N>(ctx.get(), name);
}

} // namespace

Sha256Digest Sha256(std::string_view data) {
	return Digest<32>(EVP_sha256(), data, "SHA-256");
}

Md5Digest Md5(std::string_view data) {
	return Digest<16>(EVP_md5(), data, "MD5");
}

Sha256Digest HmacSha256(std::string_view key, std::string_view data) {
	Sha256Digest out{};
	unsigned int len = 0;
	// HMAC() rejects a null key pointer even for a zero length key.
	static const unsigned char kEmpty = 0;
	const void *key_ptr = key.empty() ? static_cast<const void *>(&kEmpty) : key.data();
	if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), reinterpret_cast<const unsigned char *>(data.data()),
	         data.size(), out.data(), &len) == nullptr ||
	    len != out.size())
		Fail("HMAC-SHA256");
	return out;
}

std::string HexEncode(const std::uint8_t *data, std::size_t len) {
	static const char kDigits[] = "0123456789abcdef";
	std::string out;
	out.reserve(len * 2);
	for (std::size_t i = 0; i < len; i++) {
		out.push_back(kDigits[data[i] >> 4]);
		out.push_back(kDigits[data[i] & 0x0f]);
	}
	return out;
}

std::string Base64Encode(std::string_view data) {
	std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
	int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
	                        reinterpret_cast<const unsigned char *>(data.data()), static_cast<int>(data.size()));
	if (n < 0)
		Fail("base64");
	out.resize(static_cast<std::size_t>(n));
	return out;
}

PayloadDigests DigestPayload(std::string_view data) {
	MdCtx sha = NewDigestCtx(EVP_sha256(), "SHA-256");
	MdCtx md5 = NewDigestCtx(EVP_md5(), "MD5");
	// Feed both digests chunk by chunk so each chunk is hashed while still in cache.
	constexpr std::size_t kChunk = 64 * 1024;
	for (std::size_t off = 0; off < data.size(); off += kChunk) {
		if (off % core::kInterruptCheckBytes == 0)
			core::ThrowIfInterrupted();
		std::size_t n = std::min(kChunk, data.size() - off);
		if (EVP_DigestUpdate(sha.get(), data.data() + off, n) != 1)
			Fail("SHA-256");
		if (EVP_DigestUpdate(md5.get(), data.data() + off, n) != 1)
			Fail("MD5");
	}
	Sha256Digest sha_out = Finish<32>(sha.get(), "SHA-256");
	Md5Digest md5_out = Finish<16>(md5.get(), "MD5");
	PayloadDigests out;
	out.sha256_hex = HexEncode(sha_out);
	out.md5_hex = HexEncode(md5_out);
	out.md5_base64 = Base64Encode(std::string_view(reinterpret_cast<const char *>(md5_out.data()), md5_out.size()));
	return out;
}

} // namespace reportstore::crypto
