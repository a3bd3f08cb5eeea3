#include "pg/jsonb_text.hpp"

#include <cstring>

extern "C" {
#include "utils/jsonfuncs.h"
#include "utils/numeric.h"
}

namespace reportstore::pg {

namespace {

constexpr int kTokensPerInterruptCheck = 4096;
constexpr size_t kStringBytesPerInterruptCheck = 1 << 20;

bool Reserve(TextBuffer *b, size_t more) {
	if (b->exceeded || b->out_of_memory)
		return false;
	if (more > b->limit - b->len) {
		b->exceeded = true;
		return false;
	}
	if (b->data == nullptr)
		return true; // counting only
	size_t needed = b->len + more;
	if (needed <= b->capacity)
		return true;
	size_t grown = b->capacity + b->capacity / 2;
	size_t capacity = grown > needed ? grown : needed;
	if (capacity > b->limit)
		capacity = b->limit;
	// Not repalloc_huge(): running out of memory must fail this report, not
	// raise an ERROR.
	auto *data = static_cast<char *>(
	    MemoryContextAllocExtended(GetMemoryChunkContext(b->data), capacity, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM));
	if (data == nullptr) {
		b->out_of_memory = true;
		return false;
	}
	std::memcpy(data, b->data, b->len);
	pfree(b->data);
	b->data = data;
	b->capacity = capacity;
	return true;
}

bool Append(TextBuffer *b, const char *bytes, size_t n) {
	if (!Reserve(b, n))
		return false;
	if (b->data != nullptr)
		std::memcpy(b->data + b->len, bytes, n);
	b->len += n;
	return true;
}

bool AppendChar(TextBuffer *b, char c) {
	if (b->data != nullptr && b->len < b->capacity) {
		b->data[b->len++] = c;
		return true;
	}
	return Append(b, &c, 1);
}

// How escape_json() of PostgreSQL 15 writes a byte of a string: nullptr
// for as it is.
const char *Escape(unsigned char c) {
	static const char *const kControl[32] = {
	    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
	    "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",     "\\u000e", "\\u000f",
	    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
	    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f"};
	if (c < 32)
		return kControl[c];
	if (c == '"')
		return "\\\"";
	if (c == '\\')
		return "\\\\";
	return nullptr;
}

// escape_json() of PostgreSQL 15 for a string of known length (jsonb strings
// contain no NUL).
bool AppendEscaped(TextBuffer *b, const char *s, size_t n) {
	if (!AppendChar(b, '"'))
		return false;
	size_t run = 0; // bytes copied as they are, not yet appended
	size_t next_check = kStringBytesPerInterruptCheck;
	for (size_t i = 0; i < n; i++) {
		if (i == next_check) {
			CHECK_FOR_INTERRUPTS();
			next_check += kStringBytesPerInterruptCheck;
		}
		const char *escape = Escape(static_cast<unsigned char>(s[i]));
		if (escape == nullptr) {
			run++;
			continue;
		}
		if (!Append(b, s + i - run, run) || !Append(b, escape, std::strlen(escape)))
			return false;
		run = 0;
	}
	if (run > 0 && !Append(b, s + n - run, run))
		return false;
	return AppendChar(b, '"');
}

// jsonb_put_escaped_value() of jsonb.c.
bool AppendScalar(TextBuffer *b, const JsonbValue &v) {
	switch (v.type) {
	case jbvNull:
		return Append(b, "null", 4);
	case jbvString:
		return AppendEscaped(b, v.val.string.val, static_cast<size_t>(v.val.string.len));
	case jbvNumeric: {
		char *text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
		bool ok = Append(b, text, std::strlen(text));
		pfree(text);
		return ok;
	}
	case jbvBool:
		return v.val.boolean ? Append(b, "true", 4) : Append(b, "false", 5);
	default:
		elog(ERROR, "unknown jsonb scalar type %d", static_cast<int>(v.type));
	}
	return false;
}

} // namespace

void InitTextBuffer(TextBuffer *buffer, size_t expected, size_t limit) {
	size_t capacity = expected < 64 ? 64 : expected;
	if (capacity > limit && limit > 0)
		capacity = limit;
	buffer->data = static_cast<char *>(palloc_extended(capacity, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM));
	buffer->len = 0;
	buffer->capacity = buffer->data != nullptr ? capacity : 0;
	buffer->limit = limit;
	buffer->exceeded = false;
	buffer->out_of_memory = buffer->data == nullptr;
}

void InitTextCounter(TextBuffer *buffer, size_t limit) {
	buffer->data = nullptr;
	buffer->len = 0;
	buffer->capacity = 0;
	buffer->limit = limit;
	buffer->exceeded = false;
	buffer->out_of_memory = false;
}

// JsonbToCStringWorker() of jsonb.c without indentation: ", " between
// elements, ": " after keys, a raw scalar without its pseudo-array brackets.
bool JsonbToText(Jsonb *jsonb, TextBuffer *out) {
	if (out->out_of_memory)
		return false;
	JsonbIterator *it = JsonbIteratorInit(&jsonb->root);
	JsonbValue v;
	JsonbIteratorToken type = WJB_DONE;
	bool first = true;
	bool redo_switch = false;
	bool raw_scalar = false;
	int tokens = 0;
	while (redo_switch || (type = JsonbIteratorNext(&it, &v, false)) != WJB_DONE) {
		redo_switch = false;
		if (++tokens % kTokensPerInterruptCheck == 0)
			CHECK_FOR_INTERRUPTS();
		bool ok = true;
		switch (type) {
		case WJB_BEGIN_ARRAY:
			if (!first)
				ok = Append(out, ", ", 2);
			if (!v.val.array.rawScalar)
				ok = ok && AppendChar(out, '[');
			else
				raw_scalar = true;
			first = true;
			break;
		case WJB_BEGIN_OBJECT:
			if (!first)
				ok = Append(out, ", ", 2);
			ok = ok && AppendChar(out, '{');
			first = true;
			break;
		case WJB_KEY:
			if (!first)
				ok = Append(out, ", ", 2);
			first = true;
			ok = ok && AppendScalar(out, v) && Append(out, ": ", 2);
			type = JsonbIteratorNext(&it, &v, false);
			if (type == WJB_VALUE) {
				first = false;
				ok = ok && AppendScalar(out, v);
			} else {
				// An object or array value: handle the token just read.
				redo_switch = true;
			}
			break;
		case WJB_ELEM:
			if (!first)
				ok = Append(out, ", ", 2);
			first = false;
			ok = ok && AppendScalar(out, v);
			break;
		case WJB_END_ARRAY:
			if (!raw_scalar)
				ok = AppendChar(out, ']');
			first = false;
			break;
		case WJB_END_OBJECT:
			ok = AppendChar(out, '}');
			first = false;
			break;
		default:
			elog(ERROR, "unknown jsonb iterator token type %d", static_cast<int>(type));
		}
		if (!ok)
			return false;
	}
	return true;
}

} // namespace reportstore::pg
