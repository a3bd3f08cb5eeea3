// The one place where reportstore depends on the PostgreSQL major version.
// Supported: PostgreSQL 15, 16, 17 and 18. Every difference between their
// APIs that reportstore meets is wrapped here; no other file tests
// PG_VERSION_NUM. PostgreSQL 16 is not installable on the Debian releases
// the suite runs on; its branches below follow the REL_16_STABLE headers
// (common/jsonapi.h, utils/guc.h, storage/proc.h).
// PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

extern "C" {
#include "common/jsonapi.h"
#include "storage/proc.h"
}

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "reportstore supports PostgreSQL 15 to 18"
#endif

namespace reportstore::pg {

// --- GUC memory -------------------------------------------------------------
// The strings and "extra" values a check hook hands to guc.c are freed by
// guc.c: with free() in PostgreSQL 15, with guc_free() (a memory context)
// since 16. elevel as for guc_strdup(): LOG returns nullptr when out of
// memory, which a check hook turns into a refusal.
inline char *GucStrdup(int elevel, const char *s) {
#if PG_VERSION_NUM >= 160000
	return guc_strdup(elevel, s);
#else
	(void)elevel;
	return strdup(s);
#endif
}

inline void GucFree(void *p) {
#if PG_VERSION_NUM >= 160000
	guc_free(p);
#else
	free(p);
#endif
}

// --- JSON parser ------------------------------------------------------------
// Semantic actions return JsonParseErrorType since PostgreSQL 16 (void
// before). Write an action as
//   JsonActionResult OnX(void *arg) { ...; return REPORTSTORE_JSON_ACTION_OK; }
#if PG_VERSION_NUM >= 160000
using JsonActionResult = JsonParseErrorType;
#define REPORTSTORE_JSON_ACTION_OK JSON_SUCCESS
#else
using JsonActionResult = void;
#define REPORTSTORE_JSON_ACTION_OK (void)0
#endif

// makeJsonLexContextCstringLen() takes a leading JsonLexContext * (nullptr:
// allocate one in the current memory context) and a size_t length since
// PostgreSQL 17; an int length before.
inline JsonLexContext *MakeJsonLexContext(char *text, size_t len, int encoding, bool need_escapes) {
#if PG_VERSION_NUM >= 170000
	return makeJsonLexContextCstringLen(nullptr, text, len, encoding, need_escapes);
#else
	return makeJsonLexContextCstringLen(text, static_cast<int>(len), encoding, need_escapes);
#endif
}

// --- Transactions -------------------------------------------------------------
// The backend's current local transaction id: MyProc->lxid until
// PostgreSQL 16, MyProc->vxid.lxid since 17.
inline LocalTransactionId CurrentLocalTransactionId() {
#if PG_VERSION_NUM >= 170000
	return MyProc->vxid.lxid;
#else
	return MyProc->lxid;
#endif
}

} // namespace reportstore::pg

// A function that does not return: C++11's [[noreturn]] on every version
// (PostgreSQL 18 replaced pg_attribute_noreturn() with a pg_noreturn prefix;
// the standard attribute needs neither).
#define REPORTSTORE_NORETURN [[noreturn]]
