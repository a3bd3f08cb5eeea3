// libFuzzer target: gzip and zstd decoding of hostile stored objects with a
// small output bound, plus a compress/decompress round trip.
//
// Input layout: byte 0 selects the codec (bit 0: gzip / zstd) and bit 1 the
// round trip; bytes 1-2 give max_output (little endian, 0..65535); the rest is
// the data. Run with -malloc_limit_mb so that an allocation far beyond the
// bound is reported as a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/compression.hpp"
#include "core/error.hpp"
#include "fuzz_check.hpp"

using namespace reportstore;
using compression::Codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
	if (size < 3)
		return 0;
	const Codec codec = (data[0] & 1) ? Codec::kZstd : Codec::kGzip;
	const bool round_trip = (data[0] & 2) != 0;
	const std::size_t max_output = data[1] | (static_cast<std::size_t>(data[2]) << 8);
	const std::string_view payload(reinterpret_cast<const char *>(data + 3), size - 3);

	try {
		const std::string out = compression::Decompress(codec, payload, max_output);
		FUZZ_CHECK(out.size() <= max_output);
		FUZZ_CHECK(!payload.empty());
		// Decoding is a function of the input: a larger bound gives the same bytes.
		FUZZ_CHECK(compression::Decompress(codec, payload, max_output + 1000) == out);
	} catch (const Error &e) {
		FUZZ_CHECK(e.kind() == ErrorKind::kIntegrity);
		FUZZ_CHECK(e.sqlstate() == sqlstate::kDataCorrupted);
	}

	if (round_trip) {
		const std::string packed = compression::Compress(codec, payload);
		FUZZ_CHECK(compression::Decompress(codec, packed, payload.size()) == payload);
		if (!payload.empty()) {
			bool refused = false;
			try {
				compression::Decompress(codec, packed, payload.size() - 1);
			} catch (const Error &e) {
				refused = e.kind() == ErrorKind::kIntegrity;
			}
			FUZZ_CHECK(refused); // one byte over the bound is refused
		}
	}
	return 0;
}
