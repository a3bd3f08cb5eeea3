#include <random>
#include <string>

#include <gtest/gtest.h>

#include "core/crypto.hpp"
#include "core/error.hpp"

namespace reportstore::crypto {
namespace {

std::string Hex(const std::string &bytes) {
	return HexEncode(reinterpret_cast<const std::uint8_t *>(bytes.data()), bytes.size());
}

std::string FromHex(const std::string &hex) {
	std::string out;
	for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
		out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
	return out;
}

TEST(Sha256Test, NistVectors) {
	EXPECT_EQ(HexEncode(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	EXPECT_EQ(HexEncode(Sha256("")), kEmptySha256Hex);
	EXPECT_EQ(HexEncode(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
	          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	EXPECT_EQ(HexEncode(Sha256(std::string(1000000, 'a'))),
	          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Md5Test, Rfc1321Vectors) {
	EXPECT_EQ(HexEncode(Md5("")), "d41d8cd98f00b204e9800998ecf8427e");
	EXPECT_EQ(HexEncode(Md5("abc")), "900150983cd24fb0d6963f7d28e17f72");
	EXPECT_EQ(HexEncode(Md5("message digest")), "f96b697d7cb7938d525a2f31aaf161d0");
	EXPECT_EQ(HexEncode(Md5("12345678901234567890123456789012345678901234567890123456789012345678901234567890")),
	          "57edf4a22be3c955ac49da2e2107b67a");
}

struct HmacCase {
	const char *name;
	std::string key;
	std::string data;
	const char *expected;
};

// RFC 4231 section 4 test cases 1-4, 6 and 7 (5 is a truncated MAC).
TEST(HmacSha256Test, Rfc4231Vectors) {
	const HmacCase cases[] = {
	    {"case 1", std::string(20, '\x0b'), "Hi There",
	     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
	    {"case 2", "Jefe", "what do ya want for nothing?",
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {"case 3", std::string(20, '\xaa'), std::string(50, '\xdd'),
	     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
	    {"case 4", FromHex("0102030405060708090a0b0c0d0e0f10111213141516171819"), std::string(50, '\xcd'),
	     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
	    {"case 6", std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First",
	     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	    {"case 7", std::string(131, '\xaa'),
	     "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be "
	     "hashed before being used by the HMAC algorithm.",
	     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	for (const auto &c : cases)
		EXPECT_EQ(HexEncode(HmacSha256(c.key, c.data)), c.expected) << c.name;
}

TEST(HmacSha256Test, EmptyKeyAndData) {
	EXPECT_EQ(HexEncode(HmacSha256("", "")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(HexEncodeTest, LowercaseAndEmpty) {
	EXPECT_EQ(Hex(""), "");
	EXPECT_EQ(Hex(std::string("\x00\x01\x7f\x80\xff", 5)), "00017f80ff");
	EXPECT_EQ(Hex("\xAB\xCD"), "abcd");
}

TEST(Base64EncodeTest, Rfc4648Vectors) {
	EXPECT_EQ(Base64Encode(""), "");
	EXPECT_EQ(Base64Encode("f"), "Zg==");
	EXPECT_EQ(Base64Encode("fo"), "Zm8=");
	EXPECT_EQ(Base64Encode("foo"), "Zm9v");
	EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
	EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
	EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
	EXPECT_EQ(Base64Encode(std::string("\xff\xfe\x00", 3)), "//4A");
	// A long input must not be wrapped into lines.
	EXPECT_EQ(Base64Encode(std::string(300, 'x')).find('\n'), std::string::npos);
}

TEST(DigestPayloadTest, EmptyPayload) {
	PayloadDigests d = DigestPayload("");
	EXPECT_EQ(d.sha256_hex, kEmptySha256Hex);
	EXPECT_EQ(d.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
	EXPECT_EQ(d.md5_base64, "1B2M2Y8AsgTpgAmY7PhCfg==");
}

TEST(DigestPayloadTest, KnownAnswer) {
	PayloadDigests d = DigestPayload("Welcome to Amazon S3.");
	EXPECT_EQ(d.sha256_hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	EXPECT_EQ(d.md5_hex, HexEncode(Md5("Welcome to Amazon S3.")));
}

TEST(DigestPayloadTest, MatchesSeparateDigestsOnLargeRandomInput) {
	std::mt19937_64 rng(20240309);
	// Sizes around the internal chunk size and a multi-MiB body.
	for (std::size_t size : {std::size_t{1}, std::size_t{65535}, std::size_t{65536}, std::size_t{65537},
	                         std::size_t{5 * 1024 * 1024 + 17}}) {
		std::string data(size, '\0');
		for (char &c : data)
			c = static_cast<char>(rng());
		PayloadDigests d = DigestPayload(data);
		Md5Digest md5 = Md5(data);
		EXPECT_EQ(d.sha256_hex, HexEncode(Sha256(data))) << size;
		EXPECT_EQ(d.md5_hex, HexEncode(md5)) << size;
		EXPECT_EQ(d.md5_base64, Base64Encode(std::string(reinterpret_cast<const char *>(md5.data()), md5.size())))
		    << size;
		EXPECT_EQ(d.md5_base64.size(), 24u);
	}
}

TEST(ErrorKindNameTest, NamesEveryKind) {
	EXPECT_STREQ(ErrorKindName(ErrorKind::kConfig), "config");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kTransient), "transient");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kSystemic), "systemic");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kNotFound), "not_found");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kIntegrity), "integrity");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kInterrupted), "interrupted");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kClient), "client");
	EXPECT_STREQ(ErrorKindName(ErrorKind::kInternal), "internal");
}

} // namespace
} // namespace reportstore::crypto
