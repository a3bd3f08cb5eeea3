// reportstore.credentials_info(): where the S3 credentials come from, until
// when the temporary ones are valid, and the last failed refresh (behind
// reportstore.status). Never a secret: no key id, secret or token.
#include "pg/credentials.hpp"
#include "pg/guard.hpp"

#include <cstring>

extern "C" {
#include "utils/timestamp.h"
}

using namespace reportstore::pg;

REPORTSTORE_FUNCTION(reportstore_credentials_info) {
	TupleDesc tupdesc;
	if (get_call_result_type(fcinfo, nullptr, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("return type must be a row type")));
	tupdesc = BlessTupleDesc(tupdesc);
	CredentialsInfo info;
	GetCredentialsInfo(&info);
	Datum values[6];
	bool nulls[6];
	std::memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(info.source);
	values[1] = TimestampTzGetDatum(info.expires_at);
	nulls[1] = info.expires_at == 0;
	values[2] = TimestampTzGetDatum(info.obtained_at);
	nulls[2] = info.obtained_at == 0;
	values[3] = BoolGetDatum(info.refreshing);
	values[4] = CStringGetTextDatum(info.last_error);
	nulls[4] = info.last_error[0] == '\0';
	values[5] = TimestampTzGetDatum(info.last_error_at);
	nulls[5] = info.last_error_at == 0;
	HeapTuple tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
