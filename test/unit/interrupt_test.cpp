// Long computations stop when the thread's interrupt probe says so.
#include "core/interrupt.hpp"

#include <gtest/gtest.h>

#include <string>

#include "core/compression.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"

namespace reportstore::core {
namespace {

// Says "stop" once it has been asked `after` times.
struct Countdown {
	int after;
	int asked = 0;
	static bool Check(void *self) {
		auto *c = static_cast<Countdown *>(self);
		return ++c->asked > c->after;
	}
};

template <typename Fn> void ExpectInterrupted(Fn &&fn) {
	try {
		fn();
		ADD_FAILURE() << "not interrupted";
	} catch (const Error &e) {
		EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
		EXPECT_EQ(e.sqlstate(), "57014");
	}
}

TEST(InterruptTest, LongWorkStopsBetweenChunks) {
	const std::string big(64u << 20, 'x');
	{
		Countdown c{2};
		ScopedInterruptProbe probe(&Countdown::Check, &c);
		ExpectInterrupted([&] { crypto::Sha256(big); });
		EXPECT_EQ(c.asked, 3); // 4 MiB at a time: stopped early, not after 64 MiB
	}
	{
		Countdown c{1};
		ScopedInterruptProbe probe(&Countdown::Check, &c);
		ExpectInterrupted([&] { crypto::DigestPayload(big); });
	}
	for (compression::Codec codec : {compression::Codec::kGzip, compression::Codec::kZstd}) {
		SCOPED_TRACE(compression::CodecName(codec));
		const std::string packed = compression::Compress(codec, big); // no probe: runs through
		Countdown c{1};
		{
			ScopedInterruptProbe probe(&Countdown::Check, &c);
			ExpectInterrupted([&] { compression::Compress(codec, big); });
		}
		Countdown d{1};
		ScopedInterruptProbe probe(&Countdown::Check, &d);
		ExpectInterrupted([&] { compression::Decompress(codec, packed, big.size()); });
	}
}

TEST(InterruptTest, ProbesNestAndEndWithTheirScope) {
	Countdown never{1000000};
	Countdown now{0};
	ScopedInterruptProbe outer(&Countdown::Check, &never);
	{
		ScopedInterruptProbe inner(&Countdown::Check, &now);
		ExpectInterrupted([] { ThrowIfInterrupted(); });
	}
	EXPECT_NO_THROW(ThrowIfInterrupted());
}

} // namespace
} // namespace reportstore::core
