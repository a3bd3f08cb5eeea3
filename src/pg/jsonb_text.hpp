// The text form of a jsonb value, byte for byte what jsonb_out (and so
// report_data::text) produces, written into a buffer that can be bounded.
//
// PostgreSQL's JsonbToCString grows a StringInfo, which raises "out of
// memory" past 1 GB and cannot be interrupted. Objects must hold exactly the
// text the database would give, so this mirrors JsonbToCStringWorker
// (jsonb.c) token by token, with the same separators and escaping
// (escape_json), numbers from numeric_out, and:
// * a limit: past it the serialization stops and reports it, without an
//   ERROR, so that the caller can fail just this report;
// * CHECK_FOR_INTERRUPTS() every few thousand tokens and every MiB of a
//   string, so that statement_timeout and pg_cancel_backend() act at once.
// PostgreSQL zone.
#pragma once

#include "pg/pg_prelude.hpp"

namespace reportstore::pg {

// A growable byte buffer in a memory context, allowed past 1 GB; or, with
// data == nullptr, a counter of the bytes that would be written.
struct TextBuffer {
	char *data; // nullptr: only count
	size_t len;
	size_t capacity;
	size_t limit;       // bytes the text may have
	bool exceeded;      // the text would have more than limit bytes
	bool out_of_memory; // the memory for the text could not be had
};

// An empty buffer in the current memory context with room for `expected`
// bytes (a guess; it grows).
void InitTextBuffer(TextBuffer *buffer, size_t expected, size_t limit);

// A counter: JsonbToText then measures the text without storing it.
void InitTextCounter(TextBuffer *buffer, size_t limit);

// Whether the text of a jsonb value of raw_size bytes (binary) may exceed
// `limit`, worth measuring before writing it: a byte of a string gives at
// most six bytes of text (a control character). Only numbers with huge
// exponents expand more; for them the limit still stops the writing.
inline bool TextMayExceed(size_t raw_size, size_t limit) {
	return raw_size > limit / 6;
}

// Appends the text form of the jsonb value. False when it exceeds the limit
// or memory runs out (then the buffer holds a prefix); no ERROR for either.
bool JsonbToText(Jsonb *jsonb, TextBuffer *out);

// The jsonb value of a JSON text of len bytes, byte for byte what jsonb_in
// makes, built bottom-up without jsonb_in's tree of JsonbValues (see
// jsonb_parse.cpp), with CHECK_FOR_INTERRUPTS() every few thousand tokens,
// and with the text released (release(arg)) as soon as it is parsed, before
// the root is laid out. The result is allocated in `into`. Raises jsonb_in's
// errors for text that is not JSON.
Jsonb *TextToJsonb(char *text, size_t len, void (*release)(void *arg), void *arg, MemoryContext into);

// A text value cannot exceed this (PostgreSQL's MaxAllocSize - 1), so a
// report whose text would be longer can never be read back.
constexpr size_t kMaxReportTextBytes = 0x3ffffffe;

} // namespace reportstore::pg
