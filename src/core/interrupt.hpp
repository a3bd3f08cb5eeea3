// Cancellation of long computations in the core (hashing, compression,
// decompression of large bodies): they ask every few MiB whether the caller
// wants to stop, through a probe installed for the current thread. The
// PostgreSQL layer installs one that reads PostgreSQL's pending-interrupt
// flags (statement_timeout, pg_cancel_backend, SIGTERM); the upload thread
// installs its own stop flag. Without a probe nothing is interrupted.
#pragma once

namespace reportstore::core {

// Returns true when the computation should stop. Must be cheap, must not
// throw; may be called from the thread that installed it only.
using StopCheck = bool (*)(void *context);

// Installs a probe for this thread for the scope's lifetime (nestable).
class ScopedInterruptProbe {
  public:
	ScopedInterruptProbe(StopCheck check, void *context) noexcept;
	~ScopedInterruptProbe();
	ScopedInterruptProbe(const ScopedInterruptProbe &) = delete;
	ScopedInterruptProbe &operator=(const ScopedInterruptProbe &) = delete;

  private:
	StopCheck saved_check_;
	void *saved_context_;
};

// Throws reportstore::Error (kInterrupted, 57014) when this thread's probe
// says stop.
void ThrowIfInterrupted();

// How many bytes a long computation handles between two checks.
inline constexpr unsigned long kInterruptCheckBytes = 4ul << 20;

} // namespace reportstore::core
