// The C++/PostgreSQL boundary.
//
// Two zones meet here. Core code (src/core) is ordinary C++ that throws
// reportstore::Error. PostgreSQL-zone code (src/pg) may ereport(), i.e.
// longjmp, so its frames hold only trivially destructible locals. CallCore()
// runs core code from the PostgreSQL zone: it catches every exception, copies
// the text into fixed buffers (no allocation inside the catch), lets the
// exception die, and only then raises the PostgreSQL error.
//
// REPORTSTORE_FUNCTION declares a SQL-callable function whose body is
// PostgreSQL-zone code, wrapped so that no C++ exception can reach the
// executor even if one escapes by mistake.
#pragma once

#include "pg/pg_compat.hpp"

#include <exception>
#include <new>
#include <utility>

#include "core/error.hpp"
#include "core/interrupt.hpp"

namespace reportstore::pg {

// True when PostgreSQL wants the current statement or process to stop. Only
// reads signal flags; safe to call from curl's transfer loop.
bool InterruptRequested() noexcept;

struct CapturedError {
	bool failed;
	bool no_answer; // see Error::no_answer()
	ErrorKind kind;
	char sqlstate[6];
	char message[1024];
	char detail[2048];
	char hint[512];
};

void CaptureError(const Error &error, CapturedError *out) noexcept;
void CaptureMessage(ErrorKind kind, const char *sqlstate, const char *message, CapturedError *out) noexcept;

// ereport(ERROR) with the captured SQLSTATE, message, detail and hint. For an
// interrupted transfer, CHECK_FOR_INTERRUPTS() runs first so the user sees
// PostgreSQL's own cancel / timeout / termination message.
REPORTSTORE_NORETURN void RaiseCaptured(const CapturedError *error);

// Runs fn (core code, no PostgreSQL calls). Returns false, with the error in
// *error, if it threw; the exception is destroyed before this returns. For
// callers that record failures and go on (the worker).
template <typename Fn> bool TryCore(Fn &&fn, CapturedError *error) {
	error->failed = false;
	// Long computations in the core ask PostgreSQL's interrupt flags.
	core::ScopedInterruptProbe probe([](void *) { return InterruptRequested(); }, nullptr);
	try {
		fn();
	} catch (const Error &e) {
		CaptureError(e, error);
	} catch (const std::bad_alloc &) {
		CaptureMessage(ErrorKind::kInternal, "53200", "out of memory", error);
	} catch (const std::exception &e) {
		CaptureMessage(ErrorKind::kInternal, "XX000", e.what(), error);
	} catch (...) {
		CaptureMessage(ErrorKind::kInternal, "XX000", "unexpected C++ exception", error);
	}
	return !error->failed;
}

// Runs fn (core code, no PostgreSQL calls) and turns any exception into a
// PostgreSQL ERROR, raised only after the exception has been destroyed.
template <typename Fn> void CallCore(Fn &&fn) {
	CapturedError error;
	if (!TryCore(std::forward<Fn>(fn), &error))
		RaiseCaptured(&error);
}

// REPORTSTORE_FUNCTION's last line of defence: the body is PostgreSQL-zone
// code that may ereport() through this frame, which therefore holds nothing
// with a destructor (unlike TryCore, whose probe must be restored).
template <typename Fn> void CatchEscapedExceptions(Fn &&fn) {
	CapturedError error;
	error.failed = false;
	try {
		fn();
	} catch (const Error &e) {
		CaptureError(e, &error);
	} catch (const std::bad_alloc &) {
		CaptureMessage(ErrorKind::kInternal, "53200", "out of memory", &error);
	} catch (...) {
		CaptureMessage(ErrorKind::kInternal, "XX000", "unexpected C++ exception", &error);
	}
	if (error.failed)
		RaiseCaptured(&error);
}

// Creates a C++ object owned by a memory context: it is deleted when the
// context is reset or deleted, including by error cleanup. PostgreSQL-zone
// frames can then hold it through a plain pointer. PostgreSQL zone.
template <typename T> T *NewOwnedByContext(MemoryContext context) {
	auto *callback =
	    static_cast<MemoryContextCallback *>(MemoryContextAllocZero(context, sizeof(MemoryContextCallback)));
	T *object = nullptr;
	CallCore([&] { object = new T(); });
	callback->func = [](void *arg) { delete static_cast<T *>(arg); };
	callback->arg = object;
	MemoryContextRegisterResetCallback(context, callback);
	return object;
}

} // namespace reportstore::pg

#define REPORTSTORE_FUNCTION(name)                                                                                     \
	static Datum name##_body(FunctionCallInfo fcinfo);                                                                 \
	extern "C" {                                                                                                       \
	PG_FUNCTION_INFO_V1(name);                                                                                         \
	}                                                                                                                  \
	extern "C" Datum name(PG_FUNCTION_ARGS) {                                                                          \
		Datum result = (Datum)0;                                                                                       \
		reportstore::pg::CatchEscapedExceptions([&] { result = name##_body(fcinfo); });                                \
		return result;                                                                                                 \
	}                                                                                                                  \
	static Datum name##_body(FunctionCallInfo fcinfo)
