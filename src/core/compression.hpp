// Report body compression: gzip (zlib) and zstd (libzstd).
//
// Objects are stored compressed with the matching Content-Encoding; the S3
// client moves and verifies the stored (compressed) bytes, callers compress
// before uploading and decompress after downloading.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace reportstore::compression {

enum class Codec { kNone, kGzip, kZstd };

// "none", "gzip" or "zstd" (ASCII case-insensitive). Throws
// reportstore::Error (kConfig, 22023) on anything else.
Codec ParseCodec(std::string_view name);

// Name as accepted by ParseCodec: "none", "gzip", "zstd".
const char *CodecName(Codec codec);

// Content-Encoding header value: "" (none), "gzip", "zstd".
const char *ContentEncoding(Codec codec);

// Codec of a stored object from its Content-Encoding header. Tolerant:
// case-insensitive, surrounding spaces ignored, empty and "identity" mean
// none, "x-gzip" is gzip, and in a comma-separated list the "identity" and
// "aws-chunked" entries are ignored. Throws reportstore::Error (kClient,
// 0A000) on an encoding that cannot be decoded (e.g. "br", "deflate", or
// several real encodings stacked).
Codec CodecFromContentEncoding(std::string_view content_encoding);

// gzip: one gzip member, deflate level 6. zstd: one frame, level 3, with the
// content checksum and
// the content size. kNone returns a copy. Throws reportstore::Error (kInternal)
// only on resource exhaustion.
std::string Compress(Codec codec, std::string_view data);

// Decodes data. gzip accepts concatenated members; zstd accepts concatenated
// and skippable frames, with or without a content size. Throws
// reportstore::Error (kIntegrity, XX001) on corrupt, truncated or trailing
// bytes, and when the output would exceed max_output bytes (a decompression
// bomb guard: never more than max_output plus one chunk is allocated for the
// output; zstd's window buffer is at most max(8 MiB, max_output), capped at
// 128 MiB, and frames asking for a larger window are refused). kNone
// returns a copy, subject to the same max_output check.
std::string Decompress(Codec codec, std::string_view data, std::size_t max_output);

} // namespace reportstore::compression
