#include "pg/extension.hpp"
#include "pg/pg_compat.hpp"

#include <cstdlib>

extern "C" {
#include "access/genam.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/syscache.h"
}

namespace reportstore::pg {

namespace {

struct ExtensionRow {
	bool found;
	Oid owner;
	Oid schema;
	int version;
};

int ParseVersion(const char *text) {
	char *end = nullptr;
	long major = std::strtol(text, &end, 10);
	long minor = (end != nullptr && *end == '.') ? std::strtol(end + 1, nullptr, 10) : 0;
	return static_cast<int>(major * 100 + minor);
}

// pg_extension has no syscache; its row is read through the OID index.
ExtensionRow ReadExtensionRow() {
	ExtensionRow row = {false, InvalidOid, InvalidOid, 0};
	Oid ext = get_extension_oid("reportstore", true);
	if (!OidIsValid(ext))
		return row;
	Relation rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(ext));
	SysScanDesc scan = systable_beginscan(rel, ExtensionOidIndexId, true, nullptr, 1, &key);
	HeapTuple tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple)) {
		auto *form = reinterpret_cast<Form_pg_extension>(GETSTRUCT(tuple));
		row.found = true;
		row.owner = form->extowner;
		row.schema = form->extnamespace;
		bool isnull;
		Datum version = heap_getattr(tuple, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);
		row.version = isnull ? 0 : ParseVersion(TextDatumGetCString(version));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return row;
}

} // namespace

bool FindReportTable(ReportTable *out, MemoryContext into, const char **why) {
	*why = nullptr;
	ExtensionRow ext = ReadExtensionRow();
	if (!ext.found) {
		*why = "extension reportstore is not installed in this database";
		return false;
	}
	char *schema = get_namespace_name(ext.schema);
	Oid relid = schema != nullptr ? get_relname_relid("reports", ext.schema) : InvalidOid;
	char relkind = OidIsValid(relid) ? get_rel_relkind(relid) : '\0';
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE) {
		*why = OidIsValid(relid) ? "reports is not a table" : "table reports does not exist";
		return false;
	}
	HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple)) {
		*why = "table reports does not exist";
		return false;
	}
	Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	MemoryContext old = MemoryContextSwitchTo(into);
	out->qualified_name = pstrdup(quote_qualified_identifier(schema, "reports"));
	out->search_path = psprintf("pg_catalog, %s, pg_temp", quote_identifier(schema));
	MemoryContextSwitchTo(old);
	out->relid = relid;
	out->owner = owner;
	out->extension_owner = ext.owner;
	out->schema_version = ext.version;
	return true;
}

const ReportTable &RequireReportTable(int min_version) {
	static ReportTable table;
	static LocalTransactionId cached_for = InvalidLocalTransactionId;
	if (cached_for != CurrentLocalTransactionId() || cached_for == InvalidLocalTransactionId) {
		const char *why = nullptr;
		cached_for = InvalidLocalTransactionId;
		if (!FindReportTable(&table, TopTransactionContext, &why))
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("%s", why),
			                errhint("reportstore works on the table reports in the schema it is installed in.")));
		cached_for = CurrentLocalTransactionId();
	}
	if (table.schema_version < min_version)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("the installed reportstore schema is version %d.%d, this library needs %d.%d",
		                       table.schema_version / 100, table.schema_version % 100, min_version / 100,
		                       min_version % 100),
		                errhint("Run ALTER EXTENSION reportstore UPDATE.")));
	return table;
}

} // namespace reportstore::pg
