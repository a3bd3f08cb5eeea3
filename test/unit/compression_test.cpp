// Tests of the gzip / zstd compression module.
#include "core/compression.hpp"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdint>
#include <random>
#include <string>

#include "core/error.hpp"

namespace reportstore::compression {
namespace {

constexpr std::size_t kMiB = 1u << 20;
constexpr std::size_t kNoLimit = std::size_t(1) << 31;

// Produced by `printf '...' | gzip -9 -n`: the system gzip binary.
const unsigned char kSystemGzip[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x2b, 0x4a, 0x2d, 0xc8, 0x2f, 0x2a, 0x29,
    0x2e, 0xc9, 0x2f, 0x4a, 0x55, 0xc8, 0xcc, 0x2b, 0x49, 0x2d, 0xca, 0x2f, 0xb0, 0x52, 0xa8, 0x56, 0xca,
    0x4c, 0x51, 0xb2, 0x52, 0x30, 0x31, 0xd2, 0x51, 0x50, 0x2a, 0xca, 0x2f, 0x2f, 0x06, 0xb2, 0xa3, 0x0d,
    0x75, 0x8c, 0x74, 0x8c, 0x63, 0x6b, 0xb9, 0x00, 0x32, 0xe8, 0x75, 0x18, 0x31, 0x00, 0x00, 0x00};
// Produced by `printf '...' | zstd`: from a pipe, so the frame has no
// content size (streaming decode required), with a checksum.
const unsigned char kSystemZstd[] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x89, 0x01, 0x00, 0x72, 0x65, 0x70, 0x6f, 0x72, 0x74, 0x73,
    0x74, 0x6f, 0x72, 0x65, 0x20, 0x69, 0x6e, 0x74, 0x65, 0x72, 0x6f, 0x70, 0x3a, 0x20, 0x7b, 0x22,
    0x69, 0x64, 0x22, 0x3a, 0x20, 0x34, 0x32, 0x2c, 0x20, 0x22, 0x72, 0x6f, 0x77, 0x73, 0x22, 0x3a,
    0x20, 0x5b, 0x31, 0x2c, 0x32, 0x2c, 0x33, 0x5d, 0x7d, 0x0a, 0x82, 0xd3, 0xf3, 0x00};
const std::string kInteropText = "reportstore interop: {\"id\": 42, \"rows\": [1,2,3]}\n";

template <std::size_t N> std::string Bytes(const unsigned char (&a)[N]) {
	return std::string(reinterpret_cast<const char *>(a), N);
}

std::string RandomBytes(std::size_t n, unsigned seed) {
	std::mt19937_64 rng(seed);
	std::string s(n, '\0');
	for (std::size_t i = 0; i < n; i += 8) {
		const std::uint64_t v = rng();
		for (std::size_t j = 0; j < 8 && i + j < n; ++j)
			s[i + j] = static_cast<char>(v >> (8 * j));
	}
	return s;
}

std::string Repetitive(std::size_t n) {
	const std::string row = "{\"id\": 12345, \"name\": \"monthly revenue\", \"value\": 3.14159},\n";
	std::string s;
	s.reserve(n);
	while (s.size() < n)
		s += row;
	s.resize(n);
	return s;
}

template <typename Fn> Error Capture(Fn &&fn) {
	try {
		fn();
	} catch (const Error &e) {
		return e;
	}
	ADD_FAILURE() << "no reportstore::Error thrown";
	return Error(ErrorKind::kInternal, "XX000", "none");
}

void ExpectCorrupt(Codec codec, const std::string &data, std::size_t max_output = kNoLimit) {
	Error e = Capture([&] { Decompress(codec, data, max_output); });
	EXPECT_EQ(e.kind(), ErrorKind::kIntegrity) << e.what() << ": " << e.detail();
	EXPECT_EQ(e.sqlstate(), "XX001");
}

TEST(Compression, ParseCodec) {
	EXPECT_EQ(ParseCodec("none"), Codec::kNone);
	EXPECT_EQ(ParseCodec("gzip"), Codec::kGzip);
	EXPECT_EQ(ParseCodec("zstd"), Codec::kZstd);
	EXPECT_EQ(ParseCodec("GZip"), Codec::kGzip);
	for (const char *bad : {"", "gz", "zstd ", "br", "deflate", "identity", "lz4"}) {
		SCOPED_TRACE(bad);
		Error e = Capture([&] { ParseCodec(bad); });
		EXPECT_EQ(e.kind(), ErrorKind::kConfig);
		EXPECT_EQ(e.sqlstate(), "22023");
		EXPECT_EQ(e.hint(), "Valid values are none, gzip and zstd.");
	}
	Error e = Capture([] { ParseCodec(std::string("x\x01y") + std::string(100, 'z')); });
	EXPECT_EQ(std::string(e.what()).find('\x01'), std::string::npos);
}

TEST(Compression, NamesAndContentEncodings) {
	EXPECT_STREQ(ContentEncoding(Codec::kNone), "");
	EXPECT_STREQ(ContentEncoding(Codec::kGzip), "gzip");
	EXPECT_STREQ(ContentEncoding(Codec::kZstd), "zstd");
	EXPECT_STREQ(CodecName(Codec::kNone), "none");
	EXPECT_STREQ(CodecName(Codec::kGzip), "gzip");
	EXPECT_STREQ(CodecName(Codec::kZstd), "zstd");
	for (Codec c : {Codec::kNone, Codec::kGzip, Codec::kZstd}) {
		EXPECT_EQ(ParseCodec(CodecName(c)), c);
		EXPECT_EQ(CodecFromContentEncoding(ContentEncoding(c)), c);
	}
}

TEST(Compression, CodecFromContentEncodingIsTolerant) {
	EXPECT_EQ(CodecFromContentEncoding(""), Codec::kNone);
	EXPECT_EQ(CodecFromContentEncoding("identity"), Codec::kNone);
	EXPECT_EQ(CodecFromContentEncoding(" Identity "), Codec::kNone);
	EXPECT_EQ(CodecFromContentEncoding("gzip"), Codec::kGzip);
	EXPECT_EQ(CodecFromContentEncoding("GZIP"), Codec::kGzip);
	EXPECT_EQ(CodecFromContentEncoding("x-gzip"), Codec::kGzip);
	EXPECT_EQ(CodecFromContentEncoding(" zstd\t"), Codec::kZstd);
	EXPECT_EQ(CodecFromContentEncoding("aws-chunked,gzip"), Codec::kGzip);
	EXPECT_EQ(CodecFromContentEncoding("identity, zstd"), Codec::kZstd);
	for (const char *bad : {"br", "deflate", "compress", "gzip, zstd", "gzip,gzip", "zstd, br"}) {
		SCOPED_TRACE(bad);
		Error e = Capture([&] { CodecFromContentEncoding(bad); });
		EXPECT_EQ(e.kind(), ErrorKind::kClient);
		EXPECT_EQ(e.sqlstate(), "0A000");
	}
}

TEST(Compression, RoundTrips) {
	const std::vector<std::pair<std::string, std::string>> inputs = {
	    {"empty", ""},
	    {"small", "{\"a\": 1}"},
	    {"one byte", "x"},
	    {"random 5 MiB", RandomBytes(5 * kMiB, 1)},
	    {"repetitive 5 MiB", Repetitive(5 * kMiB)},
	};
	for (Codec codec : {Codec::kNone, Codec::kGzip, Codec::kZstd}) {
		for (const auto &[name, data] : inputs) {
			SCOPED_TRACE(std::string(CodecName(codec)) + " " + name);
			const std::string packed = Compress(codec, data);
			if (codec == Codec::kNone) {
				EXPECT_TRUE(packed == data);
			}
			if (codec != Codec::kNone && name == "repetitive 5 MiB") {
				EXPECT_LT(packed.size(), data.size() / 20) << packed.size();
			}
			if (codec != Codec::kNone && name == "random 5 MiB") {
				EXPECT_LT(packed.size(), data.size() + data.size() / 100 + 1024) << packed.size();
			}
			const std::string back = Decompress(codec, packed, data.size());
			EXPECT_EQ(back.size(), data.size());
			EXPECT_TRUE(back == data);
		}
	}
}

TEST(Compression, FormatsAreTheStandardOnes) {
	const std::string gz = Compress(Codec::kGzip, "hello");
	ASSERT_GE(gz.size(), 18u);
	EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f); // gzip magic
	EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
	EXPECT_EQ(static_cast<unsigned char>(gz[2]), 0x08); // deflate
	const std::string zs = Compress(Codec::kZstd, "hello");
	ASSERT_GE(zs.size(), 4u);
	EXPECT_EQ(zs.substr(0, 4), "\x28\xb5\x2f\xfd"); // zstd frame magic
	EXPECT_EQ(ZSTD_getFrameContentSize(zs.data(), zs.size()), 5u);
}

TEST(Compression, DecodesSystemToolOutput) {
	EXPECT_EQ(Decompress(Codec::kGzip, Bytes(kSystemGzip), 1000), kInteropText);
	const std::string zs = Bytes(kSystemZstd);
	ASSERT_EQ(ZSTD_getFrameContentSize(zs.data(), zs.size()), ZSTD_CONTENTSIZE_UNKNOWN);
	EXPECT_EQ(Decompress(Codec::kZstd, zs, 1000), kInteropText);
}

TEST(Compression, ZstdStreamedFrameWithoutContentSize) {
	// A large frame without a content size, as a streaming compressor makes it.
	const std::string data = Repetitive(3 * kMiB) + RandomBytes(kMiB, 7);
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ASSERT_NE(cctx, nullptr);
	ASSERT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
	std::string out(ZSTD_compressBound(data.size()), '\0');
	ZSTD_inBuffer in{data.data(), data.size(), 0};
	ZSTD_outBuffer ob{out.data(), out.size(), 0};
	std::size_t rem = 0;
	do {
		rem = ZSTD_compressStream2(cctx, &ob, &in, ZSTD_e_end);
		ASSERT_FALSE(ZSTD_isError(rem)) << ZSTD_getErrorName(rem);
	} while (rem != 0);
	ZSTD_freeCCtx(cctx);
	out.resize(ob.pos);
	ASSERT_EQ(ZSTD_getFrameContentSize(out.data(), out.size()), ZSTD_CONTENTSIZE_UNKNOWN);
	EXPECT_TRUE(Decompress(Codec::kZstd, out, data.size()) == data);
}

TEST(Compression, ConcatenatedMembersAndFrames) {
	EXPECT_EQ(Decompress(Codec::kGzip, Compress(Codec::kGzip, "abc") + Compress(Codec::kGzip, "def"), 100),
	          "abcdef");
	EXPECT_EQ(Decompress(Codec::kZstd, Compress(Codec::kZstd, "abc") + Compress(Codec::kZstd, "def"), 100),
	          "abcdef");
	// A zstd skippable frame is ignored.
	const std::string skippable("\x50\x2a\x4d\x18\x03\x00\x00\x00xyz", 11);
	EXPECT_EQ(Decompress(Codec::kZstd, skippable + Compress(Codec::kZstd, "abc"), 100), "abc");
}

TEST(Compression, CorruptInputIsAnIntegrityError) {
	const std::string data = Repetitive(200000) + RandomBytes(1000, 3);
	for (Codec codec : {Codec::kGzip, Codec::kZstd}) {
		SCOPED_TRACE(CodecName(codec));
		const std::string packed = Compress(codec, data);
		ExpectCorrupt(codec, "");                                    // empty
		ExpectCorrupt(codec, "this is not compressed at all");      // garbage
		ExpectCorrupt(codec, packed.substr(0, packed.size() / 2));  // truncated
		ExpectCorrupt(codec, packed.substr(0, packed.size() - 1));  // last byte missing
		ExpectCorrupt(codec, packed.substr(0, 3));                  // header only
		ExpectCorrupt(codec, packed + "trailing garbage");           // trailing bytes
		std::string flipped = packed;
		flipped[flipped.size() - 2] = static_cast<char>(flipped[flipped.size() - 2] ^ 0x55); // checksum / size
		ExpectCorrupt(codec, flipped);
		std::string middle = packed;
		middle[middle.size() / 2] = static_cast<char>(middle[middle.size() / 2] ^ 0xff);
		ExpectCorrupt(codec, middle);
	}
	// The other codec's format.
	ExpectCorrupt(Codec::kGzip, Compress(Codec::kZstd, "abc"));
	ExpectCorrupt(Codec::kZstd, Compress(Codec::kGzip, "abc"));
	Error e = Capture([] { Decompress(Codec::kGzip, "not gzip", 100); });
	EXPECT_EQ(std::string(e.what()), "could not decompress gzip data");
	EXPECT_FALSE(e.detail().empty());
}

TEST(Compression, DecompressionBombGuard) {
	const std::string zeros(64 * kMiB, '\0');
	for (Codec codec : {Codec::kGzip, Codec::kZstd}) {
		SCOPED_TRACE(CodecName(codec));
		const std::string bomb = Compress(codec, zeros);
		EXPECT_LT(bomb.size(), 100u * 1024); // 64 MiB of zeros compress to < 100 KiB
		Error e = Capture([&] { Decompress(codec, bomb, kMiB); });
		EXPECT_EQ(e.kind(), ErrorKind::kIntegrity);
		EXPECT_EQ(e.sqlstate(), "XX001");
		EXPECT_NE(e.detail().find("limit of 1048576 bytes"), std::string::npos) << e.detail();
		// Exactly at the limit is fine, one byte less is not.
		const std::string small = Compress(codec, std::string(1000, 'a'));
		EXPECT_EQ(Decompress(codec, small, 1000).size(), 1000u);
		ExpectCorrupt(codec, small, 999);
		ExpectCorrupt(codec, small, 0);
		EXPECT_EQ(Decompress(codec, Compress(codec, ""), 0), "");
	}
	EXPECT_EQ(Decompress(Codec::kNone, "abc", 3), "abc");
	ExpectCorrupt(Codec::kNone, "abc", 2);
	// The zstd frame header's content size is not trusted: a frame claiming
	// a small size but carrying more is still bounded by max_output.
	ExpectCorrupt(Codec::kZstd, Bytes(kSystemZstd), 10);
	ExpectCorrupt(Codec::kGzip, Bytes(kSystemGzip), 10);
}

} // namespace
} // namespace reportstore::compression

// A zstd frame may declare a window far larger than its content; the decoder
// must not allocate that window when the caller's bound is small (found by
// fuzz_decompress: a 10-byte header made it allocate 126 MB).
TEST(Compression, ZstdWindowIsBoundedByTheOutputLimit) {
	const std::string data(1000, 'x');
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ASSERT_NE(cctx, nullptr);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 27);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
	std::string frame(ZSTD_compressBound(data.size()) + 64, '\0');
	ZSTD_inBuffer in{data.data(), data.size(), 0};
	ZSTD_outBuffer out{frame.data(), frame.size(), 0};
	size_t left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
	ZSTD_freeCCtx(cctx);
	ASSERT_EQ(left, 0u);
	frame.resize(out.pos);
	try {
		reportstore::compression::Decompress(reportstore::compression::Codec::kZstd, frame, 100);
		FAIL() << "a frame asking for a 128 MiB window was accepted with a 100-byte bound";
	} catch (const reportstore::Error &e) {
		EXPECT_EQ(e.kind(), reportstore::ErrorKind::kIntegrity);
	}
	// With room for it, the same frame decodes.
	EXPECT_EQ(reportstore::compression::Decompress(reportstore::compression::Codec::kZstd, frame, 1u << 30), data);
}
