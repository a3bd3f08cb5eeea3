#include "core/interrupt.hpp"

#include "core/error.hpp"

namespace reportstore::core {

namespace {

// Plain pointers: trivially destructible thread-locals.
thread_local StopCheck t_check = nullptr;
thread_local void *t_context = nullptr;

} // namespace

ScopedInterruptProbe::ScopedInterruptProbe(StopCheck check, void *context) noexcept
    : saved_check_(t_check), saved_context_(t_context) {
	t_check = check;
	t_context = context;
}

ScopedInterruptProbe::~ScopedInterruptProbe() {
	t_check = saved_check_;
	t_context = saved_context_;
}

void ThrowIfInterrupted() {
	if (t_check != nullptr && t_check(t_context))
		throw Error(ErrorKind::kInterrupted, sqlstate::kQueryCanceled, "the operation was interrupted");
}

} // namespace reportstore::core
