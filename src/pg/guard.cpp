#include "pg/guard.hpp"

#include <cstring>

namespace reportstore::pg {

namespace {

void CopyText(char *dst, std::size_t size, const char *src) noexcept {
	if (src == nullptr) {
		dst[0] = '\0';
		return;
	}
	std::size_t len = std::strlen(src);
	if (len >= size)
		len = size - 1;
	std::memcpy(dst, src, len);
	dst[len] = '\0';
}

} // namespace

void CaptureError(const Error &error, CapturedError *out) noexcept {
	out->failed = true;
	out->no_answer = error.no_answer();
	out->kind = error.kind();
	CopyText(out->sqlstate, sizeof(out->sqlstate), error.sqlstate().size() == 5 ? error.sqlstate().c_str() : "XX000");
	CopyText(out->message, sizeof(out->message), error.what());
	CopyText(out->detail, sizeof(out->detail), error.detail().c_str());
	CopyText(out->hint, sizeof(out->hint), error.hint().c_str());
}

void CaptureMessage(ErrorKind kind, const char *sqlstate, const char *message, CapturedError *out) noexcept {
	out->failed = true;
	out->no_answer = false;
	out->kind = kind;
	CopyText(out->sqlstate, sizeof(out->sqlstate), sqlstate);
	CopyText(out->message, sizeof(out->message), message);
	out->detail[0] = '\0';
	out->hint[0] = '\0';
}

void RaiseCaptured(const CapturedError *error) {
	if (error->kind == ErrorKind::kInterrupted)
		CHECK_FOR_INTERRUPTS();
	const char *s = error->sqlstate;
	ereport(ERROR, (errcode(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4])), errmsg_internal("%s", error->message),
	                error->detail[0] ? errdetail_internal("%s", error->detail) : 0,
	                error->hint[0] ? errhint("%s", error->hint) : 0));
	pg_unreachable();
}

bool InterruptRequested() noexcept {
	return QueryCancelPending || ProcDiePending;
}

} // namespace reportstore::pg
