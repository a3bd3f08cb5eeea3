// TextToJsonb (jsonb_text.hpp): JSON text to jsonb, byte for byte what
// jsonb_in makes, without jsonb_in's tree of JsonbValues (several times the
// text's size for reports of many small objects).
//
// The binary form (utils/jsonb.h) is built bottom-up while PostgreSQL's own
// JSON parser runs: each value's bytes go straight into one buffer; when a
// container ends, its header and JEntries are put in front of its children's
// bytes (a memmove), and an object's values are put in key order (keys sorted
// by length, then bytes; the last of equal keys wins). Containers and numbers
// start 4-byte aligned, as convertJsonbValue() places them; a container's
// children stay aligned when it moves by a multiple of 4. The result is the
// buffer itself, so memory is the text, the binary form, and one object's
// values but its largest, while that object is reordered.
// PostgreSQL zone.
#include "pg/jsonb_text.hpp"
#include "pg/pg_compat.hpp"

#include <cstring>

extern "C" {
#include "mb/pg_wchar.h"
#include "utils/jsonfuncs.h"
#include "utils/numeric.h"
}

namespace reportstore::pg {

namespace {

constexpr int kTokensPerInterruptCheck = 4096;

// A growable array of bytes or of fixed-size items, in one memory context.
struct Stack {
	char *data;
	size_t len; // bytes used
	size_t capacity;
	MemoryContext context;
};

void StackInit(Stack *s, size_t capacity, MemoryContext context) {
	s->data = static_cast<char *>(MemoryContextAlloc(context, capacity));
	s->len = 0;
	s->capacity = capacity;
	s->context = context;
}

// Room for `more` bytes past len (the data may move).
void StackReserve(Stack *s, size_t more) {
	if (more > MaxAllocSize - s->len)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("jsonb value too large")));
	const size_t needed = s->len + more;
	if (needed <= s->capacity)
		return;
	// Growth by half: untouched capacity costs no memory, but a doubling
	// past the binary form's size would be touched by nothing and still be
	// had from the allocator.
	size_t capacity = Max(needed, s->capacity + s->capacity / 2);
	capacity = Min(capacity, static_cast<size_t>(MaxAllocSize));
	s->data = static_cast<char *>(repalloc(s->data, capacity));
	s->capacity = capacity;
}

char *StackPush(Stack *s, size_t n) {
	StackReserve(s, n);
	char *p = s->data + s->len;
	s->len += n;
	return p;
}

template <typename T> T *StackAt(Stack *s, size_t index) {
	return reinterpret_cast<T *>(s->data) + index;
}

template <typename T> size_t StackCount(const Stack *s) {
	return s->len / sizeof(T);
}

// A pair of an object being parsed: its key (in the key stack) and where its
// value's bytes are (unpadded) in the data buffer.
struct Pair {
	size_t key_offset;
	size_t start;
	size_t len;
	uint32 key_len;
	uint32 type; // JENTRY_IS... bits
	uint32 order;
};

// A container being parsed.
struct Frame {
	bool object;
	uint32 pad;         // padding before it: part of its length in an array
	size_t start;       // offset of its first byte in the data buffer (4-aligned)
	size_t first_child; // its first element (Stack of uint32) or pair
	size_t keys_start;  // its first key byte
};

struct Builder {
	Stack data;        // the jsonb: varlena header, then the root container
	Stack frames;      // Frame
	Stack elems;       // uint32 JEntry (type | padded length) of open arrays' elements
	Stack pairs;       // Pair of open objects
	Stack keys;        // key bytes of open objects
	bool root_pending; // the root container ended; assembled after the parse
	bool raw_scalar;   // the document is one scalar, in a pseudo-array
	int tokens;
};

void Tick(Builder *b) {
	if (++b->tokens % kTokensPerInterruptCheck == 0)
		CHECK_FOR_INTERRUPTS();
}

void CheckStringLength(size_t len) {
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("string too long to represent as jsonb string"),
		                errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
		                          JENTRY_OFFLENMASK)));
}

void CheckTotal(size_t total, bool object) {
	if (total > JENTRY_OFFLENMASK)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
		                errmsg("total size of jsonb %s elements exceeds the maximum of %u bytes",
		                       object ? "object" : "array", JENTRY_OFFLENMASK)));
}

void CheckCount(size_t n, bool object) {
	if (n > JB_CMASK)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
		                errmsg("number of jsonb %s exceeds the maximum allowed (%u)",
		                       object ? "object pairs" : "array elements", JB_CMASK)));
}

// Zero bytes up to the next multiple of 4; returns how many.
uint32 PadData(Builder *b) {
	const uint32 pad = static_cast<uint32>(INTALIGN(b->data.len) - b->data.len);
	if (pad > 0)
		std::memset(StackPush(&b->data, pad), 0, pad);
	return pad;
}

Frame *Top(Builder *b) {
	const size_t n = StackCount<Frame>(&b->frames);
	return n == 0 ? nullptr : StackAt<Frame>(&b->frames, n - 1);
}

Pair *CurrentPair(Builder *b) {
	return StackAt<Pair>(&b->pairs, StackCount<Pair>(&b->pairs) - 1);
}

// A value of `len` bytes of type `type` has just been written at `start`
// (after `pad` bytes of padding) as a child of the top container.
void AddChild(Builder *b, uint32 type, uint32 pad, size_t start, size_t len) {
	Frame *top = Top(b);
	if (top->object) {
		Pair *pair = CurrentPair(b);
		pair->type = type;
		pair->start = start;
		pair->len = len;
		return;
	}
	CheckTotal(pad + len, false);
	*reinterpret_cast<uint32 *>(StackPush(&b->elems, sizeof(uint32))) = type | static_cast<uint32>(pad + len);
}

// The JEntry of the index-th child, `total` bytes of children so far: every
// JB_OFFSET_STRIDE-th one holds the end offset instead of the length.
uint32 Entry(uint32 type_and_len, size_t index, size_t total) {
	if (index % JB_OFFSET_STRIDE == 0)
		return (type_and_len & JENTRY_TYPEMASK) | static_cast<uint32>(total) | JENTRY_HAS_OFF;
	return type_and_len;
}

// Puts the header and the JEntries of an ended array in front of its
// elements; returns the array's length in bytes.
size_t AssembleArray(Builder *b, const Frame &f, uint32 extra_header) {
	const size_t n = StackCount<uint32>(&b->elems) - f.first_child;
	CheckCount(n, false);
	const size_t shift = sizeof(uint32) + n * sizeof(JEntry); // a multiple of 4: alignment kept
	const size_t region = b->data.len - f.start;
	StackReserve(&b->data, shift);
	char *base = b->data.data + f.start;
	std::memmove(base + shift, base, region);
	b->data.len += shift;
	const uint32 header = static_cast<uint32>(n) | JB_FARRAY | extra_header;
	std::memcpy(base, &header, sizeof(header));
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		const uint32 meta = *StackAt<uint32>(&b->elems, f.first_child + i);
		total += JBE_OFFLENFLD(meta);
		CheckTotal(total, false);
		const uint32 entry = Entry(meta, i, total);
		std::memcpy(base + sizeof(uint32) + i * sizeof(JEntry), &entry, sizeof(entry));
	}
	b->elems.len = f.first_child * sizeof(uint32);
	CheckTotal(f.pad + b->data.len - f.start, false);
	return b->data.len - f.start;
}

// qsort_arg's view of an object's pairs.
struct KeyOrder {
	const Pair *pairs;
	const char *keys;
};

int CompareKeys(const Pair &a, const Pair &b, const char *keys) {
	if (a.key_len != b.key_len)
		return a.key_len > b.key_len ? 1 : -1;
	return std::memcmp(keys + a.key_offset, keys + b.key_offset, a.key_len);
}

// jsonb's key order; of equal keys the later one first (it is kept).
int ComparePairIndexes(const void *a, const void *b, void *arg) {
	const auto *order = static_cast<const KeyOrder *>(arg);
	const Pair &pa = order->pairs[*static_cast<const uint32 *>(a)];
	const Pair &pb = order->pairs[*static_cast<const uint32 *>(b)];
	const int c = CompareKeys(pa, pb, order->keys);
	if (c != 0)
		return c;
	return pa.order > pb.order ? -1 : 1;
}

bool NeedsAlignment(uint32 type) {
	return type == JENTRY_ISNUMERIC || type == JENTRY_ISCONTAINER;
}

// Lays out an ended object: header, JEntries, keys in order, then the values
// in the same order, each aligned as its type needs. Returns its length.
size_t AssembleObject(Builder *b, const Frame &f) {
	const size_t n = StackCount<Pair>(&b->pairs) - f.first_child;
	CheckCount(n, true);
	const Pair *pairs = StackAt<Pair>(&b->pairs, f.first_child);
	const char *keys = b->keys.data;

	// The kept pairs in key order; usually already so.
	uint32 *kept = static_cast<uint32 *>(palloc(sizeof(uint32) * Max(n, static_cast<size_t>(1))));
	bool in_order = true;
	for (size_t i = 0; i < n; i++) {
		kept[i] = static_cast<uint32>(i);
		if (i > 0 && CompareKeys(pairs[i - 1], pairs[i], keys) >= 0)
			in_order = false;
	}
	size_t m = n;
	if (!in_order) {
		KeyOrder order = {pairs, keys};
		qsort_arg(kept, n, sizeof(uint32), ComparePairIndexes, &order);
		m = 0;
		for (size_t i = 0; i < n; i++)
			if (m == 0 || CompareKeys(pairs[kept[m - 1]], pairs[kept[i]], keys) != 0)
				kept[m++] = kept[i];
	}

	// Where everything goes.
	size_t key_bytes = 0;
	for (size_t k = 0; k < m; k++)
		key_bytes += pairs[kept[k]].key_len;
	const size_t keys_at = f.start + sizeof(uint32) + 2 * m * sizeof(JEntry);
	size_t *target = static_cast<size_t *>(palloc(sizeof(size_t) * Max(m, static_cast<size_t>(1))));
	size_t pos = keys_at + key_bytes;
	size_t largest = m;
	for (size_t k = 0; k < m; k++) {
		const Pair &p = pairs[kept[k]];
		target[k] = NeedsAlignment(p.type) ? INTALIGN(pos) : pos;
		pos = target[k] + p.len;
		if (largest == m || p.len > pairs[kept[largest]].len)
			largest = k;
	}
	const size_t end = pos;
	if (end > b->data.len)
		StackReserve(&b->data, end - b->data.len);
	char *data = b->data.data;

	if (in_order) {
		// Each value moves up (past at least the header and its JEntries,
		// more than any change of padding), so last to first nothing is
		// overwritten before it has moved.
		for (size_t k = m; k-- > 0;)
			std::memmove(data + target[k], data + pairs[k].start, pairs[k].len);
	} else {
		// All values but the largest are set aside, the largest is moved
		// into place, then the others are put back in theirs.
		size_t aside_bytes = 0;
		for (size_t k = 0; k < m; k++)
			if (k != largest)
				aside_bytes += pairs[kept[k]].len;
		char *aside = static_cast<char *>(palloc(Max(aside_bytes, static_cast<size_t>(1))));
		size_t at = 0;
		for (size_t k = 0; k < m; k++)
			if (k != largest) {
				std::memcpy(aside + at, data + pairs[kept[k]].start, pairs[kept[k]].len);
				at += pairs[kept[k]].len;
			}
		if (largest < m)
			std::memmove(data + target[largest], data + pairs[kept[largest]].start, pairs[kept[largest]].len);
		at = 0;
		for (size_t k = 0; k < m; k++)
			if (k != largest) {
				std::memcpy(data + target[k], aside + at, pairs[kept[k]].len);
				at += pairs[kept[k]].len;
			}
		pfree(aside);
	}

	// Keys, padding, header, JEntries.
	size_t at = keys_at;
	for (size_t k = 0; k < m; k++) {
		std::memcpy(data + at, keys + pairs[kept[k]].key_offset, pairs[kept[k]].key_len);
		at += pairs[kept[k]].key_len;
	}
	size_t previous_end = keys_at + key_bytes;
	for (size_t k = 0; k < m; k++) {
		std::memset(data + previous_end, 0, target[k] - previous_end);
		previous_end = target[k] + pairs[kept[k]].len;
	}
	const uint32 header = static_cast<uint32>(m) | JB_FOBJECT;
	std::memcpy(data + f.start, &header, sizeof(header));
	char *entries = data + f.start + sizeof(uint32);
	size_t total = 0;
	for (size_t k = 0; k < m; k++) {
		total += pairs[kept[k]].key_len;
		CheckTotal(total, true);
		const uint32 entry = Entry(JENTRY_ISSTRING | pairs[kept[k]].key_len, k, total);
		std::memcpy(entries + k * sizeof(JEntry), &entry, sizeof(entry));
	}
	previous_end = keys_at + key_bytes;
	for (size_t k = 0; k < m; k++) {
		const Pair &p = pairs[kept[k]];
		const size_t padded = target[k] + p.len - previous_end;
		previous_end = target[k] + p.len;
		total += padded;
		CheckTotal(total, true);
		const uint32 entry = Entry(p.type | static_cast<uint32>(padded), k + m, total);
		std::memcpy(entries + (m + k) * sizeof(JEntry), &entry, sizeof(entry));
	}
	b->data.len = end;
	CheckTotal(f.pad + end - f.start, true);
	b->keys.len = f.keys_start;
	b->pairs.len = f.first_child * sizeof(Pair);
	pfree(target);
	pfree(kept);
	return end - f.start;
}

void BeginContainer(Builder *b, bool object) {
	Tick(b);
	Frame f;
	f.object = object;
	f.pad = StackCount<Frame>(&b->frames) == 0 ? 0 : PadData(b);
	f.start = b->data.len;
	f.first_child = object ? StackCount<Pair>(&b->pairs) : StackCount<uint32>(&b->elems);
	f.keys_start = b->keys.len;
	*reinterpret_cast<Frame *>(StackPush(&b->frames, sizeof(Frame))) = f;
}

void EndContainer(Builder *b) {
	if (StackCount<Frame>(&b->frames) == 1) {
		b->root_pending = true; // once the text is released
		return;
	}
	const Frame f = *Top(b);
	b->frames.len -= sizeof(Frame);
	const size_t len = f.object ? AssembleObject(b, f) : AssembleArray(b, f, 0);
	AddChild(b, JENTRY_ISCONTAINER, f.pad, f.start, len);
}

JsonActionResult OnObjectStart(void *arg) {
	BeginContainer(static_cast<Builder *>(arg), true);
	return REPORTSTORE_JSON_ACTION_OK;
}

JsonActionResult OnArrayStart(void *arg) {
	BeginContainer(static_cast<Builder *>(arg), false);
	return REPORTSTORE_JSON_ACTION_OK;
}

JsonActionResult OnContainerEnd(void *arg) {
	EndContainer(static_cast<Builder *>(arg));
	return REPORTSTORE_JSON_ACTION_OK;
}

JsonActionResult OnField(void *arg, char *name, bool) {
	auto *b = static_cast<Builder *>(arg);
	Tick(b);
	const size_t len = std::strlen(name);
	CheckStringLength(len);
	Pair pair;
	pair.key_offset = b->keys.len;
	pair.key_len = static_cast<uint32>(len);
	pair.start = 0;
	pair.len = 0;
	pair.type = JENTRY_ISNULL;
	pair.order = static_cast<uint32>(StackCount<Pair>(&b->pairs) - Top(b)->first_child);
	std::memcpy(StackPush(&b->keys, len), name, len);
	*reinterpret_cast<Pair *>(StackPush(&b->pairs, sizeof(Pair))) = pair;
	pfree(name);
	return REPORTSTORE_JSON_ACTION_OK;
}

JsonActionResult OnScalar(void *arg, char *token, JsonTokenType type) {
	auto *b = static_cast<Builder *>(arg);
	Tick(b);
	const bool root = StackCount<Frame>(&b->frames) == 0;
	if (root) {
		// A document that is one scalar: a raw scalar pseudo-array.
		BeginContainer(b, false);
	}
	uint32 jtype = JENTRY_ISNULL;
	uint32 pad = 0;
	size_t start = b->data.len;
	size_t len = 0;
	switch (type) {
	case JSON_TOKEN_STRING:
		jtype = JENTRY_ISSTRING;
		len = std::strlen(token);
		CheckStringLength(len);
		std::memcpy(StackPush(&b->data, len), token, len);
		break;
	case JSON_TOKEN_NUMBER: {
		jtype = JENTRY_ISNUMERIC;
		Numeric number = DatumGetNumeric(
		    DirectFunctionCall3(numeric_in, CStringGetDatum(token), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		pad = PadData(b);
		start = b->data.len;
		len = VARSIZE_ANY(number);
		std::memcpy(StackPush(&b->data, len), number, len);
		pfree(number);
		break;
	}
	case JSON_TOKEN_TRUE:
		jtype = JENTRY_ISBOOL_TRUE;
		break;
	case JSON_TOKEN_FALSE:
		jtype = JENTRY_ISBOOL_FALSE;
		break;
	case JSON_TOKEN_NULL:
		jtype = JENTRY_ISNULL;
		break;
	default:
		elog(ERROR, "invalid json token type %d", static_cast<int>(type));
	}
	if (token != nullptr)
		pfree(token);
	AddChild(b, jtype, pad, start, len);
	if (root) {
		b->raw_scalar = true;
		b->root_pending = true;
	}
	return REPORTSTORE_JSON_ACTION_OK;
}

} // namespace

Jsonb *TextToJsonb(char *text, size_t len, void (*release)(void *arg), void *arg, MemoryContext into) {
	if (len > kMaxReportTextBytes)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("report text of %zu bytes is too large", len)));
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "reportstore jsonb parse", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	Builder b;
	// The binary form is about as large as the text.
	StackInit(&b.data, Max(len + len / 8, static_cast<size_t>(64)), into);
	std::memset(StackPush(&b.data, VARHDRSZ), 0, VARHDRSZ);
	StackInit(&b.frames, 16 * sizeof(Frame), work);
	StackInit(&b.elems, 1024, work);
	StackInit(&b.pairs, 64 * sizeof(Pair), work);
	StackInit(&b.keys, 1024, work);
	b.root_pending = false;
	b.raw_scalar = false;
	b.tokens = 0;

	JsonLexContext *lex = MakeJsonLexContext(text, len, GetDatabaseEncoding(), true);
	JsonSemAction sem;
	std::memset(&sem, 0, sizeof(sem));
	sem.semstate = &b;
	sem.object_start = OnObjectStart;
	sem.object_end = OnContainerEnd;
	sem.array_start = OnArrayStart;
	sem.array_end = OnContainerEnd;
	sem.object_field_start = OnField;
	sem.scalar = OnScalar;
	pg_parse_json_or_ereport(lex, &sem);
	// Every string and number has been copied: the text can go before the
	// root is laid out.
	if (release != nullptr)
		release(arg);
	if (!b.root_pending || StackCount<Frame>(&b.frames) != 1)
		elog(ERROR, "incomplete JSON document");
	const Frame root = *Top(&b);
	(void)(root.object ? AssembleObject(&b, root) : AssembleArray(&b, root, b.raw_scalar ? JB_FSCALAR : 0));
	SET_VARSIZE(b.data.data, b.data.len);
	Jsonb *result = reinterpret_cast<Jsonb *>(b.data.data);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return result;
}

} // namespace reportstore::pg
