// reportstore.* configuration parameters (GUCs).
#pragma once

#include "pg/pg_prelude.hpp"

#include "core/aws/credential_sources.hpp"
#include "core/s3/client.hpp"

namespace reportstore::pg {

enum UrlStyleSetting { kUrlStylePath = 0, kUrlStyleVirtual = 1 };

struct Settings {
	char *endpoint;
	char *bucket;
	char *allowed_buckets; // further buckets minio_path may name (comma-separated)
	char *region;
	// Credentials: the GUC variables always hold a mask (see settings.cpp);
	// the real values are in these.
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;
	char *access_key_id_guc;
	char *secret_access_key_guc;
	char *session_token_guc;
	// Temporary credentials (see core/aws/credential_sources.hpp).
	int credential_source; // aws::CredentialSource
	char *role_arn;
	char *role_session_name;
	char *sts_endpoint;            // empty: AWS's regional STS
	char *web_identity_token_file; // empty: AWS_WEB_IDENTITY_TOKEN_FILE
	char *imds_endpoint;
	int credentials_refresh_margin_s;
	int url_style;
	bool verify_tls;
	char *ca_file;
	int connect_timeout_ms;
	int request_timeout_ms;
	int timeout_per_mib_ms;
	bool keep_report_data;
	int delete_delay_s;
	int multipart_threshold_kb;
	int multipart_part_size_kb;
	int compression; // compression::Codec
	char *storage_class;
	char *sse;
	char *sse_kms_key_id;
	// Background worker.
	char *database; // list, or * for every database
	int max_workers;
	bool worker_enabled;
	int naptime_ms;
	int batch_size;
	int batch_bytes_kb;
	int max_concurrency;
	int max_rate_kb; // 0 = unlimited
	int offload_delay_s;
	int retry_base_delay_ms;
	int retry_max_delay_ms;
	int max_attempts; // failures that retrying will not fix stop after this many attempts
	int systemic_backoff_max_ms;
};

extern Settings g_settings;

void DefineSettings();

// Core-zone view of the settings. Throws reportstore::Error (kConfig) when the
// endpoint is missing or malformed, or no credentials are configured.
// Credentials fall back to the AWS_* environment of the postmaster. With
// temporary credentials (see BuildSourceSettings) config.credentials stays
// empty: the caller sets config.credentials_provider (s3_session.cpp).
s3::Config BuildS3Config(const Settings &settings);

// Core zone: where credentials come from, from the settings and the
// postmaster's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE). Throws
// reportstore::Error (kConfig) for a malformed STS or IMDS endpoint.
aws::SourceSettings BuildSourceSettings(const Settings &settings);
http::TlsOptions BuildTlsOptions(const Settings &settings);

// Core zone: bucket is reportstore.bucket or listed in reportstore.allowed_buckets.
bool IsAllowedBucket(const Settings &settings, std::string_view bucket);

// Core zone: applies compression, storage class and encryption settings to an
// upload. A compressed body is stored in *compressed, which must outlive the
// upload.
void ApplyUploadSettings(const Settings &settings, s3::PutRequest *put, std::string *compressed);

// Core zone: the same without compression (the upload thread compresses).
void ApplyObjectSettings(const Settings &settings, s3::PutRequest *put);

} // namespace reportstore::pg
