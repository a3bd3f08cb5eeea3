#include "pg/settings.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/compression.hpp"
#include "core/uri.hpp"
#include "pg/pg_compat.hpp"
#include "pg/shared_state.hpp"

extern "C" {
#include "tcop/tcopprot.h"
}

namespace reportstore::pg {

Settings g_settings;

namespace {

// A refused value that holds a credential must not reach the server log
// through the "STATEMENT:" line that log_min_error_statement adds to the
// error: the statement text is dropped for this one error. (log_statement
// still logs statements before they run; the README says so.)
void HideStatementFromLog() {
	debug_query_string = nullptr;
}

const struct config_enum_entry kCompressionOptions[] = {
    {"none", static_cast<int>(compression::Codec::kNone), false},
    {"gzip", static_cast<int>(compression::Codec::kGzip), false},
    {"zstd", static_cast<int>(compression::Codec::kZstd), false},
    {nullptr, 0, false},
};

bool CheckStorageClass(char **newval, void **extra, GucSource source) {
	const char *v = *newval ? *newval : "";
	std::size_t len = std::strlen(v);
	bool ok = len <= 64;
	for (std::size_t i = 0; ok && i < len; i++)
		ok = (v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') ||
		     v[i] == '_' || v[i] == '-';
	if (!ok)
		GUC_check_errdetail("A storage class is a name such as STANDARD_IA, GLACIER_IR or REDUCED_REDUNDANCY.");
	return ok;
}

bool CheckSse(char **newval, void **extra, GucSource source) {
	const char *v = *newval ? *newval : "";
	if (v[0] == '\0' || std::strcmp(v, "AES256") == 0 || std::strcmp(v, "aws:kms") == 0)
		return true;
	GUC_check_errdetail("Server-side encryption is '' (the bucket's default), 'AES256' or 'aws:kms'.");
	return false;
}

const struct config_enum_entry kUrlStyleOptions[] = {
    {"path", kUrlStylePath, false},
    {"virtual", kUrlStyleVirtual, false},
    {nullptr, 0, false},
};

// Credentials and the endpoint are hidden from non-superusers (SHOW,
// pg_settings, pg_file_settings) and only superusers may change them.
constexpr int kSecretFlags = GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE;
constexpr int kAdminFlags = GUC_SUPERUSER_ONLY;

// An http(s) URL setting: the S3, STS or IMDS endpoint.
bool CheckUrlSetting(const char *name, const char *value, const char *example) {
	if (value == nullptr || value[0] == '\0')
		return true;
	// A URL with user info may hold credentials. PostgreSQL would repeat a
	// refused value in its error and in the server log, so the message is
	// our own and never contains the value.
	if (std::strchr(value, '@') != nullptr) {
		HideStatementFromLog();
		GUC_check_errmsg("invalid value for parameter \"%s\": the URL contains user information", name);
		GUC_check_errdetail("Credentials in the endpoint URL would be visible to anyone who can read the setting.");
		GUC_check_errhint("Give the credentials through the server's environment (AWS_ACCESS_KEY_ID, "
		                  "AWS_SECRET_ACCESS_KEY) or reportstore.access_key_id and reportstore.secret_access_key.");
		return false;
	}
	bool ok = true;
	char message[512];
	try {
		uri::ParseEndpoint(value);
	} catch (const std::exception &e) {
		ok = false;
		std::strncpy(message, e.what(), sizeof(message) - 1);
		message[sizeof(message) - 1] = '\0';
	} catch (...) {
		ok = false;
		std::strcpy(message, "invalid endpoint");
	}
	if (!ok) {
		GUC_check_errdetail("%s", message);
		GUC_check_errhint("Use a URL such as %s.", example);
	}
	return ok;
}

bool CheckEndpoint(char **newval, void **extra, GucSource source) {
	return CheckUrlSetting("reportstore.endpoint", *newval,
	                       "http://127.0.0.1:9000 or https://s3.us-east-1.amazonaws.com");
}

bool CheckStsEndpoint(char **newval, void **extra, GucSource source) {
	return CheckUrlSetting("reportstore.sts_endpoint", *newval,
	                       "https://sts.eu-west-1.amazonaws.com, or the S3 endpoint of MinIO or Ceph RGW");
}

bool CheckImdsEndpoint(char **newval, void **extra, GucSource source) {
	return CheckUrlSetting("reportstore.imds_endpoint", *newval, "http://169.254.169.254");
}

// A core check (it throws reportstore::Error) as a GUC check hook.
template <typename Fn> bool CheckWithCore(const char *value, Fn &&check) {
	if (value == nullptr || value[0] == '\0')
		return true;
	char detail[512] = "";
	try {
		check(std::string(value));
		return true;
	} catch (const Error &e) {
		strlcpy(detail, e.detail().c_str(), sizeof(detail));
	} catch (...) {
		strlcpy(detail, "invalid value", sizeof(detail));
	}
	GUC_check_errdetail("%s", detail);
	return false;
}

bool CheckRoleArn(char **newval, void **extra, GucSource source) {
	return CheckWithCore(*newval, [](const std::string &v) { aws::CheckRoleArn(v); });
}

bool CheckRoleSessionName(char **newval, void **extra, GucSource source) {
	return CheckWithCore(*newval, [](const std::string &v) { aws::CheckRoleSessionName(v); });
}

bool CheckTokenFile(char **newval, void **extra, GucSource source) {
	const char *value = *newval;
	if (value == nullptr || value[0] == '\0' || is_absolute_path(value))
		return true;
	GUC_check_errdetail("reportstore.web_identity_token_file must be an absolute path.");
	return false;
}

const struct config_enum_entry kCredentialSourceOptions[] = {
    {"static", static_cast<int>(aws::CredentialSource::kStatic), false},
    {"web_identity", static_cast<int>(aws::CredentialSource::kWebIdentity), false},
    {"instance", static_cast<int>(aws::CredentialSource::kInstance), false},
    {"auto", static_cast<int>(aws::CredentialSource::kAuto), false},
    {nullptr, 0, false},
};

bool CheckBucket(char **newval, void **extra, GucSource source) {
	bool ok = false;
	try {
		ok = uri::IsValidBucketName(*newval ? *newval : "");
	} catch (...) {
	}
	if (!ok) {
		GUC_check_errdetail("Bucket names have 3 to 63 characters: lowercase letters, digits, dots and hyphens.");
	}
	return ok;
}

// Comma-separated bucket names, each valid like reportstore.bucket.
bool CheckAllowedBuckets(char **newval, void **extra, GucSource source) {
	bool ok = true;
	try {
		ok = uri::ParseBucketList(*newval ? *newval : "", nullptr);
	} catch (...) {
		ok = false;
	}
	if (!ok)
		GUC_check_errdetail("A comma-separated list of bucket names: 3 to 63 characters each, lowercase letters, "
		                    "digits, dots and hyphens, not formatted like an IP address.");
	return ok;
}

bool CheckRegion(char **newval, void **extra, GucSource source) {
	const char *value = *newval ? *newval : "";
	std::size_t len = std::strlen(value);
	if (len == 0 || len > 64)
		goto bad;
	for (std::size_t i = 0; i < len; i++) {
		char c = value[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			goto bad;
	}
	return true;
bad:
	GUC_check_errdetail("A region is a lowercase name such as us-east-1.");
	return false;
}

bool CheckCaFile(char **newval, void **extra, GucSource source) {
	const char *value = *newval;
	if (value == nullptr || value[0] == '\0' || is_absolute_path(value))
		return true;
	GUC_check_errdetail("reportstore.ca_file must be an absolute path.");
	return false;
}

// Credentials never reach PostgreSQL's view of a setting. The check hook
// moves the real value into the setting's "extra" and replaces the value with
// a constant mask, so the postmaster's "parameter ... changed to ..." line on
// reload, SHOW, pg_settings and error messages only ever see the mask; the
// assign hook publishes the real value to reportstore. SHOW prints the mask
// when a value is set and an empty string otherwise.
constexpr const char *kSecretMask = "********";

// Values from ALTER DATABASE/ROLE ... SET (and a function's SET clause) are
// stored in catalogs that every role can read: refuse credentials there. The
// check runs with PGC_S_TEST when such a statement is executed, and with the
// database/user sources when a session applies what was stored before.
bool FromReadableCatalog(GucSource source) {
	return source == PGC_S_TEST || source == PGC_S_DATABASE || source == PGC_S_USER ||
	       source == PGC_S_DATABASE_USER;
}

bool CheckSecret(char **newval, void **extra, GucSource source) {
	const char *raw = *newval ? *newval : "";
	if (raw[0] != '\0' && FromReadableCatalog(source)) {
		HideStatementFromLog();
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("reportstore credentials cannot be set per database, per role or per function");
		GUC_check_errdetail("Such values are stored in pg_db_role_setting or pg_proc, which every role can read.");
		GUC_check_errhint("Set them in the server's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
		                  "AWS_SESSION_TOKEN) or with ALTER SYSTEM.");
		return false;
	}
	// The value, the mask and the extra belong to guc.c, which frees them
	// its own way (free() in PostgreSQL 15, guc_free() since 16).
	char *real = GucStrdup(LOG, raw);
	if (real == nullptr)
		return false;
	char *mask = GucStrdup(LOG, kSecretMask);
	if (mask == nullptr) {
		GucFree(real);
		return false;
	}
	GucFree(*newval);
	*newval = mask;
	*extra = real;
	return true;
}

void AssignAccessKeyId(const char *newval, void *extra) {
	g_settings.access_key_id = static_cast<const char *>(extra);
}
void AssignSecretAccessKey(const char *newval, void *extra) {
	g_settings.secret_access_key = static_cast<const char *>(extra);
}
void AssignSessionToken(const char *newval, void *extra) {
	g_settings.session_token = static_cast<const char *>(extra);
}
const char *ShowAccessKeyId() {
	return g_settings.access_key_id && g_settings.access_key_id[0] ? kSecretMask : "";
}
const char *ShowSecretAccessKey() {
	return g_settings.secret_access_key && g_settings.secret_access_key[0] ? kSecretMask : "";
}
const char *ShowSessionToken() {
	return g_settings.session_token && g_settings.session_token[0] ? kSecretMask : "";
}

std::string FirstNonEmpty(const char *setting, const char *env_name) {
	if (setting != nullptr && setting[0] != '\0')
		return setting;
	const char *env = std::getenv(env_name);
	return env ? env : "";
}

} // namespace

void DefineSettings() {
	DefineCustomStringVariable("reportstore.endpoint", "URL of the S3-compatible endpoint, e.g. http://127.0.0.1:9000.",
	                           nullptr, &g_settings.endpoint, "", PGC_SUSET, kAdminFlags, CheckEndpoint, nullptr,
	                           nullptr);
	DefineCustomStringVariable("reportstore.bucket", "Bucket that holds offloaded reports.", nullptr,
	                           &g_settings.bucket, "reports", PGC_SUSET, kAdminFlags, CheckBucket, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.allowed_buckets",
	                           "Further buckets that minio_path may name, for reports migrated from elsewhere.",
	                           "New objects always go to reportstore.bucket; minio_path may name only that bucket "
	                           "and these.",
	                           &g_settings.allowed_buckets, "", PGC_SUSET, kAdminFlags, CheckAllowedBuckets, nullptr,
	                           nullptr);
	DefineCustomStringVariable("reportstore.region", "Region used in request signatures.", nullptr, &g_settings.region,
	                           "us-east-1", PGC_SUSET, kAdminFlags, CheckRegion, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.access_key_id",
	                           "Access key id; empty means the server's AWS_ACCESS_KEY_ID environment variable.",
	                           nullptr, &g_settings.access_key_id_guc, "", PGC_SUSET, kSecretFlags, CheckSecret,
	                           AssignAccessKeyId, ShowAccessKeyId);
	DefineCustomStringVariable(
	    "reportstore.secret_access_key",
	    "Secret access key; empty means the server's AWS_SECRET_ACCESS_KEY environment variable.", nullptr,
	    &g_settings.secret_access_key_guc, "", PGC_SUSET, kSecretFlags, CheckSecret, AssignSecretAccessKey,
	    ShowSecretAccessKey);
	DefineCustomStringVariable(
	    "reportstore.session_token", "Session token of temporary credentials; empty means AWS_SESSION_TOKEN.", nullptr,
	    &g_settings.session_token_guc, "", PGC_SUSET, kSecretFlags, CheckSecret, AssignSessionToken, ShowSessionToken);
	DefineCustomEnumVariable("reportstore.credential_source",
	                         "Where S3 credentials come from: static, web_identity, instance or auto.",
	                         "static: reportstore.access_key_id or AWS_ACCESS_KEY_ID. web_identity: STS "
	                         "AssumeRoleWithWebIdentity with the token file. instance: the EC2 instance's role "
	                         "(IMDSv2). auto: static keys if any, else web identity, else the instance.",
	                         &g_settings.credential_source, static_cast<int>(aws::CredentialSource::kStatic),
	                         kCredentialSourceOptions, PGC_SUSET, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.role_arn", "Role assumed through STS; empty: none.",
	                           "With web_identity, the role of AssumeRoleWithWebIdentity (empty: AWS_ROLE_ARN); "
	                           "with the other sources, the role their credentials assume (STS AssumeRole).",
	                           &g_settings.role_arn, "", PGC_SUSET, kAdminFlags, CheckRoleArn, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.role_session_name", "Session name of the assumed role.", nullptr,
	                           &g_settings.role_session_name, "reportstore", PGC_SUSET, kAdminFlags,
	                           CheckRoleSessionName, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.sts_endpoint", "URL of STS; empty: AWS's regional STS.",
	                           "For MinIO and Ceph RGW, their S3 endpoint.", &g_settings.sts_endpoint, "", PGC_SUSET,
	                           kAdminFlags, CheckStsEndpoint, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.web_identity_token_file",
	                           "Web identity token file; empty: AWS_WEB_IDENTITY_TOKEN_FILE.",
	                           "Read again at every refresh (Kubernetes rotates it).",
	                           &g_settings.web_identity_token_file, "", PGC_SUSET, kAdminFlags, CheckTokenFile,
	                           nullptr, nullptr);
	DefineCustomStringVariable("reportstore.imds_endpoint", "URL of the EC2 instance metadata service.", nullptr,
	                           &g_settings.imds_endpoint, aws::kDefaultImdsEndpoint, PGC_SUSET, kAdminFlags,
	                           CheckImdsEndpoint, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.credentials_refresh_margin",
	                        "How long before they expire temporary credentials are refreshed.",
	                        "Never sooner than 5 seconds after they were obtained.",
	                        &g_settings.credentials_refresh_margin_s, 300, 10, 12 * 3600, PGC_SUSET,
	                        kAdminFlags | GUC_UNIT_S, nullptr, nullptr, nullptr);
	DefineCustomEnumVariable("reportstore.url_style", "Bucket addressing: path (MinIO) or virtual (AWS).", nullptr,
	                         &g_settings.url_style, kUrlStylePath, kUrlStyleOptions, PGC_SUSET, kAdminFlags, nullptr,
	                         nullptr, nullptr);
	DefineCustomBoolVariable("reportstore.verify_tls", "Verify the endpoint's TLS certificate and host name.", nullptr,
	                         &g_settings.verify_tls, true, PGC_SUSET, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.ca_file", "PEM file of CA certificates trusted for the endpoint.", nullptr,
	                           &g_settings.ca_file, "", PGC_SUSET, kAdminFlags, CheckCaFile, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.connect_timeout", "Timeout for connecting to the endpoint.", nullptr,
	                        &g_settings.connect_timeout_ms, 5000, 100, 600000, PGC_SUSET, kAdminFlags | GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.request_timeout", "Base timeout of one S3 request.",
	                        "The timeout grows by reportstore.timeout_per_mib for every MiB transferred.",
	                        &g_settings.request_timeout_ms, 30000, 100, 3600000, PGC_SUSET, kAdminFlags | GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.timeout_per_mib", "Extra request timeout per MiB of report.", nullptr,
	                        &g_settings.timeout_per_mib_ms, 1000, 0, 600000, PGC_SUSET, kAdminFlags | GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomBoolVariable("reportstore.keep_report_data",
	                         "Keep report_data after a verified upload instead of setting it to NULL.", nullptr,
	                         &g_settings.keep_report_data, false, PGC_SUSET, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.delete_delay",
	                        "How long objects of deleted or recalled reports are kept before deletion.",
	                        "Keep it longer than the point-in-time-recovery window of the database, so that a "
	                        "restored database still finds its objects.",
	                        &g_settings.delete_delay_s, 7 * 24 * 3600, 0, INT_MAX, PGC_SUSET, kAdminFlags | GUC_UNIT_S,
	                        nullptr, nullptr, nullptr);

	DefineCustomIntVariable("reportstore.multipart_threshold",
	                        "Reports larger than this are uploaded as concurrent multipart uploads.", nullptr,
	                        &g_settings.multipart_threshold_kb, 64 * 1024, 5 * 1024, INT_MAX / 2, PGC_SUSET,
	                        kAdminFlags | GUC_UNIT_KB, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.multipart_part_size", "Size of each part of a multipart upload.", nullptr,
	                        &g_settings.multipart_part_size_kb, 16 * 1024, 5 * 1024, 5 * 1024 * 1024, PGC_SUSET,
	                        kAdminFlags | GUC_UNIT_KB, nullptr, nullptr, nullptr);
	DefineCustomEnumVariable("reportstore.compression", "Compression of new objects: none, gzip or zstd.",
	                         "Objects keep their Content-Encoding; report_fetch() reads all of them.",
	                         &g_settings.compression, static_cast<int>(compression::Codec::kNone), kCompressionOptions,
	                         PGC_SUSET, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.storage_class", "x-amz-storage-class of new objects; empty = the bucket's.",
	                           nullptr, &g_settings.storage_class, "", PGC_SUSET, kAdminFlags, CheckStorageClass,
	                           nullptr, nullptr);
	DefineCustomStringVariable("reportstore.sse", "Server-side encryption of new objects: '', 'AES256' or 'aws:kms'.",
	                           nullptr, &g_settings.sse, "", PGC_SUSET, kAdminFlags, CheckSse, nullptr, nullptr);
	DefineCustomStringVariable("reportstore.sse_kms_key_id", "KMS key id for reportstore.sse = 'aws:kms'.", nullptr,
	                           &g_settings.sse_kms_key_id, "", PGC_SUSET, kAdminFlags, nullptr, nullptr, nullptr);

	// Workers. Their number is fixed at server start (shared memory, worker
	// slots); the rest is read again on SIGHUP (pg_reload_conf()). Both exist
	// only when the library is preloaded: a PGC_POSTMASTER setting cannot be
	// defined later.
	if (process_shared_preload_libraries_in_progress) {
		DefineCustomStringVariable("reportstore.database",
		                           "Databases the workers offload: a comma-separated list, or * for every database.",
		                           "A database where the extension is not installed is checked again every minute "
		                           "and at CREATE EXTENSION.",
		                           &g_settings.database, "postgres", PGC_SIGHUP, kAdminFlags, nullptr, nullptr,
		                           nullptr);
		DefineCustomIntVariable("reportstore.max_workers", "Most worker processes, over all databases.",
		                        "Each database served gets an equal share (at least one while there are enough). "
		                        "Needs as many max_worker_processes, plus one for the launcher.",
		                        &g_settings.max_workers, 2, 1, kMaxWorkers, PGC_POSTMASTER, kAdminFlags, nullptr,
		                        nullptr, nullptr);
	}
	DefineCustomBoolVariable("reportstore.worker_enabled", "Offload reports in the background.", nullptr,
	                         &g_settings.worker_enabled, false, PGC_SIGHUP, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.naptime", "How often the worker looks for work when nobody wakes it.", nullptr,
	                        &g_settings.naptime_ms, 10000, 100, 3600000, PGC_SIGHUP, kAdminFlags | GUC_UNIT_MS, nullptr,
	                        nullptr, nullptr);
	DefineCustomIntVariable("reportstore.batch_size", "Most reports offloaded in one batch (one transaction).", nullptr,
	                        &g_settings.batch_size, 256, 1, 10000, PGC_SIGHUP, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.batch_bytes", "Most report bytes offloaded in one batch.",
	                        "A single report larger than this still goes alone in its batch.",
	                        &g_settings.batch_bytes_kb, 64 * 1024, 64, 4 * 1024 * 1024, PGC_SIGHUP,
	                        kAdminFlags | GUC_UNIT_KB, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.max_concurrency", "Most uploads in flight at once in a batch.", nullptr,
	                        &g_settings.max_concurrency, 16, 1, 256, PGC_SIGHUP, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.max_rate", "Most report bytes per second the worker uploads; 0 = no limit.",
	                        "Limits how much CPU and I/O the migration takes from the application.",
	                        &g_settings.max_rate_kb, 0, 0, INT_MAX, PGC_SIGHUP, kAdminFlags | GUC_UNIT_KB, nullptr,
	                        nullptr, nullptr);
	DefineCustomIntVariable("reportstore.offload_delay", "Reports changed more recently than this are left alone.",
	                        nullptr, &g_settings.offload_delay_s, 0, 0, 7 * 24 * 3600, PGC_SIGHUP,
	                        kAdminFlags | GUC_UNIT_S, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.retry_base_delay", "Delay before the first retry of a failed report.",
	                        "Each further failure doubles it (with jitter) up to reportstore.retry_max_delay.",
	                        &g_settings.retry_base_delay_ms, 10000, 10, 86400000, PGC_SIGHUP, kAdminFlags | GUC_UNIT_MS,
	                        nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.retry_max_delay", "Longest delay between retries of a failed report.", nullptr,
	                        &g_settings.retry_max_delay_ms, 3600000, 10, 86400000, PGC_SIGHUP,
	                        kAdminFlags | GUC_UNIT_MS, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.max_attempts",
	                        "Attempts after which a report whose failure retrying will not fix is left alone.",
	                        "Protocol and client errors stop after this many attempts, until the report changes or "
	                        "report_offload() is called for it; transient errors (timeouts, 5xx) are always retried.",
	                        &g_settings.max_attempts, 5, 1, 1000, PGC_SIGHUP, kAdminFlags, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("reportstore.systemic_backoff_max", "Longest pause after a systemic error.",
	                        "Access denied, missing bucket, bad credentials or an unreachable endpoint pause the "
	                        "whole worker; the pause doubles up to this.",
	                        &g_settings.systemic_backoff_max_ms, 300000, 100, 86400000, PGC_SIGHUP,
	                        kAdminFlags | GUC_UNIT_MS, nullptr, nullptr, nullptr);
}

s3::Config BuildS3Config(const Settings &settings) {
	if (settings.endpoint == nullptr || settings.endpoint[0] == '\0')
		throw Error(ErrorKind::kConfig, "F0000", "reportstore.endpoint is not set", {},
		            "Set reportstore.endpoint to the URL of the S3 server, e.g. ALTER SYSTEM SET reportstore.endpoint "
		            "= 'http://127.0.0.1:9000'; SELECT pg_reload_conf();");
	s3::Config config;
	config.endpoint = uri::ParseEndpoint(settings.endpoint);
	config.region = settings.region ? settings.region : "us-east-1";
	config.url_style = settings.url_style == kUrlStyleVirtual ? s3::UrlStyle::kVirtual : s3::UrlStyle::kPath;
	const aws::SourceSettings source = BuildSourceSettings(settings);
	aws::CheckSourceSettings(source); // e.g. "no S3 credentials are configured"
	if (!aws::IsTemporary(source))
		config.credentials = source.static_credentials;
	config.timeouts.connect_ms = settings.connect_timeout_ms;
	config.timeouts.request_ms = settings.request_timeout_ms;
	config.timeouts.per_mib_ms = settings.timeout_per_mib_ms;
	config.multipart_threshold = static_cast<std::uint64_t>(settings.multipart_threshold_kb) * 1024;
	config.part_size = static_cast<std::uint64_t>(settings.multipart_part_size_kb) * 1024;
	config.part_concurrency = settings.max_concurrency;
	return config;
}

aws::SourceSettings BuildSourceSettings(const Settings &settings) {
	aws::SourceSettings s;
	s.source = static_cast<aws::CredentialSource>(settings.credential_source);
	s.static_credentials.access_key_id = FirstNonEmpty(settings.access_key_id, "AWS_ACCESS_KEY_ID");
	s.static_credentials.secret_access_key = FirstNonEmpty(settings.secret_access_key, "AWS_SECRET_ACCESS_KEY");
	s.static_credentials.session_token = FirstNonEmpty(settings.session_token, "AWS_SESSION_TOKEN");
	s.static_from_environment = settings.access_key_id == nullptr || settings.access_key_id[0] == '\0';
	s.role_arn = settings.role_arn ? settings.role_arn : "";
	s.environment_role_arn = FirstNonEmpty(nullptr, "AWS_ROLE_ARN");
	if (settings.role_session_name != nullptr && settings.role_session_name[0] != '\0')
		s.role_session_name = settings.role_session_name;
	s.web_identity_token_file = FirstNonEmpty(settings.web_identity_token_file, "AWS_WEB_IDENTITY_TOKEN_FILE");
	const std::string region = settings.region ? settings.region : "us-east-1";
	const bool sts_set = settings.sts_endpoint != nullptr && settings.sts_endpoint[0] != '\0';
	s.sts.endpoint = uri::ParseEndpoint(sts_set ? std::string(settings.sts_endpoint) : aws::RegionalStsEndpoint(region));
	s.sts.region = region;
	s.sts.connect_timeout_ms = settings.connect_timeout_ms;
	s.sts.timeout_ms = settings.request_timeout_ms;
	const bool imds_set = settings.imds_endpoint != nullptr && settings.imds_endpoint[0] != '\0';
	s.imds.endpoint = uri::ParseEndpoint(imds_set ? settings.imds_endpoint : aws::kDefaultImdsEndpoint);
	return s;
}

void ApplyUploadSettings(const Settings &settings, s3::PutRequest *put, std::string *compressed) {
	auto codec = static_cast<compression::Codec>(settings.compression);
	if (codec != compression::Codec::kNone) {
		*compressed = compression::Compress(codec, put->body);
		put->body = *compressed;
		put->content_encoding = compression::ContentEncoding(codec);
	}
	ApplyObjectSettings(settings, put);
}

void ApplyObjectSettings(const Settings &settings, s3::PutRequest *put) {
	put->storage_class = settings.storage_class ? settings.storage_class : "";
	put->sse = settings.sse ? settings.sse : "";
	put->sse_kms_key_id = settings.sse_kms_key_id ? settings.sse_kms_key_id : "";
}

bool IsAllowedBucket(const Settings &settings, std::string_view bucket) {
	if (settings.bucket != nullptr && bucket == settings.bucket)
		return true;
	std::vector<std::string> extra;
	return settings.allowed_buckets != nullptr && uri::ParseBucketList(settings.allowed_buckets, &extra) &&
	       std::find(extra.begin(), extra.end(), bucket) != extra.end();
}

http::TlsOptions BuildTlsOptions(const Settings &settings) {
	http::TlsOptions tls;
	tls.verify = settings.verify_tls;
	tls.ca_file = settings.ca_file ? settings.ca_file : "";
	return tls;
}

} // namespace reportstore::pg
