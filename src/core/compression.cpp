// Report body compression. See compression.hpp.
#include "core/compression.hpp"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "core/error.hpp"
#include "core/interrupt.hpp"
#include "core/strings.hpp"

namespace reportstore::compression {

namespace {

constexpr const char *kSqlFeatureNotSupported = "0A000";
constexpr std::size_t kChunk = 64u << 10;
constexpr int kGzipLevel = 6;
constexpr int kZstdLevel = 3;
constexpr int kZstdMinWindowLogMax = 23; // 8 MiB
constexpr int kZstdMaxWindowLogMax = 27; // 128 MiB, ZSTD_WINDOWLOG_LIMIT_DEFAULT

// Bytes of outside text (a setting, a header, zlib's message) repeated in a message.
constexpr std::size_t kMaxEchoedBytes = 64;

[[noreturn]] void Corrupt(Codec codec, const std::string &detail) {
	throw Error(ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
	            std::string("could not decompress ") + CodecName(codec) + " data", detail,
	            "The stored object is damaged or is not in the format its Content-Encoding says.");
}

[[noreturn]] void TooLarge(Codec codec, std::size_t max_output) {
	throw Error(ErrorKind::kIntegrity, sqlstate::kDataCorrupted,
	            std::string("could not decompress ") + CodecName(codec) + " data",
	            "The decompressed data would exceed the limit of " + std::to_string(max_output) + " bytes.",
	            "The object does not decompress to a report of the expected size.");
}

[[noreturn]] void OutOfMemory(const char *what) {
	throw Error(ErrorKind::kInternal, sqlstate::kOutOfMemory, std::string("out of memory in ") + what);
}

// Appends n bytes of buf to out, failing when out would exceed max_output.
void Append(std::string *out, const char *buf, std::size_t n, std::size_t max_output, Codec codec) {
	if (n > max_output - std::min(out->size(), max_output) || out->size() > max_output)
		TooLarge(codec, max_output);
	if (out->size() / core::kInterruptCheckBytes != (out->size() + n) / core::kInterruptCheckBytes)
		core::ThrowIfInterrupted(); // every few MiB of output
	out->append(buf, n);
}

// --- gzip ------------------------------------------------------------------

// A z_stream freed by End once initialized (live).
template <int (*End)(z_streamp)> struct ZStream {
	z_stream zs{};
	bool live = false;
	ZStream() = default;
	ZStream(const ZStream &) = delete;
	ZStream &operator=(const ZStream &) = delete;
	~ZStream() {
		if (live)
			End(&zs);
	}
};
using Deflater = ZStream<deflateEnd>;
using Inflater = ZStream<inflateEnd>;

// Throws unless rc, from deflateInit2 or inflateInit2, is Z_OK.
void CheckInit(int rc, const char *what) {
	if (rc == Z_MEM_ERROR)
		OutOfMemory(what);
	if (rc != Z_OK)
		throw Error(ErrorKind::kInternal, sqlstate::kInternalError, std::string("could not initialize ") + what,
		            std::string("zlib error ") + std::to_string(rc));
}

std::string GzipCompress(std::string_view data) {
	Deflater d;
	CheckInit(deflateInit2(&d.zs, kGzipLevel, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), "gzip compression");
	d.live = true;
	std::string out;
	std::size_t pos = 0;
	char buf[kChunk];
	for (;;) {
		// Input in slices, so that the caller can be interrupted between them.
		core::ThrowIfInterrupted();
		const std::size_t take = std::min<std::size_t>(data.size() - pos, core::kInterruptCheckBytes);
		d.zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(data.data() + pos));
		d.zs.avail_in = static_cast<uInt>(take);
		const bool last = pos + take == data.size();
		do {
			d.zs.next_out = reinterpret_cast<Bytef *>(buf);
			d.zs.avail_out = sizeof buf;
			const int r = deflate(&d.zs, last ? Z_FINISH : Z_NO_FLUSH);
			if (r == Z_STREAM_ERROR)
				throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "gzip compression failed");
			out.append(buf, sizeof buf - d.zs.avail_out);
			if (r == Z_STREAM_END)
				return out;
		} while (d.zs.avail_out == 0 || d.zs.avail_in > 0 || last);
		pos += take;
	}
}

std::string GzipDecompress(std::string_view data, std::size_t max_output) {
	if (data.empty())
		Corrupt(Codec::kGzip, "The data is empty.");
	Inflater in;
	CheckInit(inflateInit2(&in.zs, 15 + 16), "gzip decompression");
	in.live = true;
	std::string out;
	char buf[kChunk];
	std::size_t pos = 0; // bytes of data handed to zlib so far
	bool ended = false;  // the current member is complete
	while (true) {
		if (in.zs.avail_in == 0 && pos < data.size()) {
			const std::size_t take = std::min<std::size_t>(data.size() - pos, UINT_MAX);
			in.zs.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(data.data() + pos));
			in.zs.avail_in = static_cast<uInt>(take);
			pos += take;
		}
		if (ended) {
			if (in.zs.avail_in == 0)
				break;                        // all members decoded
			if (inflateReset(&in.zs) != Z_OK) // another member follows
				Corrupt(Codec::kGzip, "zlib could not start the next gzip member.");
			ended = false;
		}
		in.zs.next_out = reinterpret_cast<Bytef *>(buf);
		in.zs.avail_out = sizeof buf;
		const int r = inflate(&in.zs, Z_NO_FLUSH);
		Append(&out, buf, sizeof buf - in.zs.avail_out, max_output, Codec::kGzip);
		if (r == Z_STREAM_END) {
			ended = true;
		} else if (r == Z_BUF_ERROR) {
			// No progress possible: the input ended inside a member.
			if (in.zs.avail_in == 0 && pos == data.size())
				break;
			Corrupt(Codec::kGzip, "zlib made no progress.");
		} else if (r == Z_MEM_ERROR) {
			OutOfMemory("gzip decompression");
		} else if (r != Z_OK) {
			Corrupt(Codec::kGzip, std::string("zlib: ") +
			                          (in.zs.msg ? strings::Clean(in.zs.msg, kMaxEchoedBytes) : std::to_string(r)) +
			                          ".");
		}
	}
	if (!ended)
		Corrupt(Codec::kGzip, "The gzip data is truncated.");
	return out;
}

// --- zstd ------------------------------------------------------------------

struct DctxDeleter {
	void operator()(ZSTD_DCtx *c) const {
		ZSTD_freeDCtx(c);
	}
};

struct CctxDeleter {
	void operator()(ZSTD_CCtx *c) const {
		ZSTD_freeCCtx(c);
	}
};

[[noreturn]] void ZstdFailed(std::size_t code) {
	if (ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation)
		OutOfMemory("zstd compression");
	throw Error(ErrorKind::kInternal, sqlstate::kInternalError, "zstd compression failed", ZSTD_getErrorName(code));
}

// One frame with a content checksum, so a damaged frame is detected by the
// decoder itself, and the content size; the input goes in slices so that
// the caller can be interrupted between them.
std::string ZstdCompress(std::string_view data) {
	std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
	if (!cctx)
		OutOfMemory("zstd compression");
	for (const auto &[param, value] :
	     {std::pair{ZSTD_c_compressionLevel, kZstdLevel}, std::pair{ZSTD_c_checksumFlag, 1}}) {
		const std::size_t rc = ZSTD_CCtx_setParameter(cctx.get(), param, value);
		if (ZSTD_isError(rc))
			ZstdFailed(rc);
	}
	const std::size_t pledged = ZSTD_CCtx_setPledgedSrcSize(cctx.get(), data.size());
	if (ZSTD_isError(pledged))
		ZstdFailed(pledged);
	std::string out(ZSTD_compressBound(data.size()), '\0');
	ZSTD_outBuffer ob{out.data(), out.size(), 0};
	std::size_t pos = 0;
	for (;;) {
		core::ThrowIfInterrupted();
		const std::size_t take = std::min<std::size_t>(data.size() - pos, core::kInterruptCheckBytes);
		const bool last = pos + take == data.size();
		ZSTD_inBuffer in{data.data() + pos, take, 0};
		std::size_t rc;
		do {
			rc = ZSTD_compressStream2(cctx.get(), &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
			if (ZSTD_isError(rc))
				ZstdFailed(rc);
		} while (last ? rc != 0 : in.pos < in.size);
		pos += take;
		if (last)
			break;
	}
	out.resize(ob.pos);
	return out;
}

std::string ZstdDecompress(std::string_view data, std::size_t max_output) {
	if (data.empty())
		Corrupt(Codec::kZstd, "The data is empty.");
	std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx(ZSTD_createDCtx());
	if (!dctx)
		OutOfMemory("zstd decompression");
	// The decoder allocates the window a frame header asks for (up to 128 MiB
	// by default) before any output exists: a 10-byte frame could make it
	// allocate 128 MiB whatever max_output is. Allow only the window that
	// max_output needs, but at least 8 MiB (the window of levels 1-19, so
	// what any zstd tool writes by default still decodes).
	int window_log = kZstdMinWindowLogMax;
	while (window_log < kZstdMaxWindowLogMax && (std::size_t{1} << window_log) < max_output)
		window_log++;
	const std::size_t wrc = ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, window_log);
	if (ZSTD_isError(wrc))
		ZstdFailed(wrc);
	std::string out;
	char buf[kChunk];
	ZSTD_inBuffer in{data.data(), data.size(), 0};
	std::size_t hint = 1; // 0 once the last frame is completely decoded and flushed
	while (true) {
		const std::size_t in_before = in.pos;
		ZSTD_outBuffer ob{buf, sizeof buf, 0};
		const std::size_t rc = ZSTD_decompressStream(dctx.get(), &ob, &in);
		if (ZSTD_isError(rc)) {
			if (ZSTD_getErrorCode(rc) == ZSTD_error_memory_allocation)
				OutOfMemory("zstd decompression");
			Corrupt(Codec::kZstd, std::string("zstd: ") + ZSTD_getErrorName(rc) + ".");
		}
		if (ob.pos == 0 && in.pos == in_before && in.pos == in.size)
			break; // nothing more: hint tells whether a frame is incomplete
		hint = rc;
		Append(&out, buf, ob.pos, max_output, Codec::kZstd);
		if (in.pos == in.size && hint == 0 && ob.pos < ob.size)
			break; // last frame complete and flushed
	}
	if (hint != 0)
		Corrupt(Codec::kZstd, "The zstd data is truncated.");
	return out;
}

} // namespace

Codec ParseCodec(std::string_view name) {
	const std::string n = strings::Lower(name);
	if (n == "none")
		return Codec::kNone;
	if (n == "gzip")
		return Codec::kGzip;
	if (n == "zstd")
		return Codec::kZstd;
	throw Error(ErrorKind::kConfig, sqlstate::kInvalidParameterValue,
	            "invalid compression \"" + strings::Clean(name, kMaxEchoedBytes) + "\"", "",
	            "Valid values are none, gzip and zstd.");
}

const char *CodecName(Codec codec) {
	switch (codec) {
	case Codec::kNone:
		return "none";
	case Codec::kGzip:
		return "gzip";
	case Codec::kZstd:
		return "zstd";
	}
	return "none";
}

const char *ContentEncoding(Codec codec) {
	return codec == Codec::kNone ? "" : CodecName(codec);
}

Codec CodecFromContentEncoding(std::string_view content_encoding) {
	Codec found = Codec::kNone;
	int real = 0;
	std::string_view rest = content_encoding;
	while (true) {
		const std::size_t comma = rest.find(',');
		const std::string token = strings::Lower(strings::Trim(rest.substr(0, comma)));
		if (token.empty() || token == "identity" || token == "aws-chunked") {
			// nothing to decode
		} else if (token == "gzip" || token == "x-gzip") {
			found = Codec::kGzip;
			++real;
		} else if (token == "zstd") {
			found = Codec::kZstd;
			++real;
		} else {
			real = 2; // unknown: cannot decode
		}
		if (comma == std::string_view::npos)
			break;
		rest.remove_prefix(comma + 1);
	}
	if (real > 1)
		throw Error(ErrorKind::kClient, kSqlFeatureNotSupported,
		            "unsupported content encoding \"" + strings::Clean(content_encoding, kMaxEchoedBytes) + "\"",
		            "Only gzip and zstd (one of them) can be decoded.");
	return found;
}

std::string Compress(Codec codec, std::string_view data) {
	switch (codec) {
	case Codec::kGzip:
		return GzipCompress(data);
	case Codec::kZstd:
		return ZstdCompress(data);
	case Codec::kNone:
		break;
	}
	return std::string(data);
}

std::string Decompress(Codec codec, std::string_view data, std::size_t max_output) {
	switch (codec) {
	case Codec::kGzip:
		return GzipDecompress(data, max_output);
	case Codec::kZstd:
		return ZstdDecompress(data, max_output);
	case Codec::kNone:
		break;
	}
	if (data.size() > max_output)
		TooLarge(codec, max_output);
	return std::string(data);
}

} // namespace reportstore::compression
