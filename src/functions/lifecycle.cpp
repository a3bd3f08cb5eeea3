// The bucket's lifecycle rules: reportstore.lifecycle() and
// reportstore.set_lifecycle(). No table is involved; every network call runs
// in a guarded core call.
#include "pg/guard.hpp"
#include "pg/s3_session.hpp"
#include "pg/settings.hpp"

#include <string>
#include <vector>

#include "core/s3/client.hpp"
#include "core/s3/xml.hpp"

extern "C" {
#include "utils/tuplestore.h"
}

using namespace reportstore;
using namespace reportstore::pg;

namespace {

constexpr const char *kLifecycleRuleId = "reportstore-expire-reports";

void ReturnLifecycleRules(FunctionCallInfo fcinfo, const std::string &xml) {
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	auto *rules = NewOwnedByContext<std::vector<s3::LifecycleRule>>(CurrentMemoryContext);
	CallCore([&] { *rules = s3::ParseLifecycleRules(xml); });
	for (const s3::LifecycleRule &rule : *rules) {
		Datum values[5];
		bool nulls[5] = {false, false, false, rule.expiration_days <= 0, rule.abort_incomplete_days <= 0};
		values[0] = CStringGetTextDatum(rule.id.c_str());
		values[1] = CStringGetTextDatum(rule.prefix.c_str());
		values[2] = CStringGetTextDatum(rule.status.c_str());
		values[3] = Int32GetDatum(rule.expiration_days);
		values[4] = Int32GetDatum(rule.abort_incomplete_days);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

} // namespace

// reportstore.lifecycle() RETURNS SETOF (rule_id, prefix, status, expiration_days)
REPORTSTORE_FUNCTION(reportstore_lifecycle) {
	InitMaterializedSRF(fcinfo, 0);
	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *xml = NewOwnedByContext<std::string>(CurrentMemoryContext);
	CallCore([&] { *xml = ProcessClient(settings).GetBucketLifecycle(settings.bucket, BackendInterruptProbe()); });
	ReturnLifecycleRules(fcinfo, *xml);
	return (Datum)0;
}

// reportstore.set_lifecycle(expire_after_days integer, confirm boolean)
REPORTSTORE_FUNCTION(reportstore_set_lifecycle) {
	int days = PG_GETARG_INT32(0);
	bool confirm = PG_GETARG_BOOL(1);
	if (!confirm)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		                errmsg("an expiry rule makes the object store delete report objects by itself"),
		                errdetail("Objects under reports/ older than %d days would be deleted although reports still "
		                          "point to them; report_fetch() would then fail for those reports.",
		                          days),
		                errhint("Call reportstore.set_lifecycle(%d, confirm => true) if old reports may lose their "
		                        "content, and run reportstore.verify() afterwards to list them.",
		                        days)));
	if (days < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("expire_after_days must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);
	const Settings &settings = g_settings;
	PrepareS3Session();
	auto *xml = NewOwnedByContext<std::string>(CurrentMemoryContext);
	CallCore([&] {
		const s3::Client &client = ProcessClient(settings);
		// This replaces the bucket's lifecycle configuration: the rule is the
		// only one reportstore manages.
		client.PutBucketLifecycleExpiry(settings.bucket, "reports/", days, kLifecycleRuleId, BackendInterruptProbe());
		*xml = client.GetBucketLifecycle(settings.bucket, BackendInterruptProbe());
	});
	ereport(NOTICE, (errmsg("objects under reports/ in bucket \"%s\" now expire after %d days, and multipart "
	                        "uploads left incomplete after %d day",
	                        settings.bucket, days, s3::kAbortIncompleteDays)));
	ReturnLifecycleRules(fcinfo, *xml);
	return (Datum)0;
}
