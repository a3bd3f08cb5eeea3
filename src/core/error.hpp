// Error type of the PostgreSQL-free core. The PostgreSQL layer turns it into
// an ereport() with the same SQLSTATE, detail and hint.
#pragma once

#include <stdexcept>
#include <string>

namespace reportstore {

// How a caller should react to an error. The worker uses it to decide between
// retrying one report, pausing everything, or giving up on a report.
enum class ErrorKind {
	kConfig,      // bad setting (endpoint, bucket, region...): fix the configuration
	kTransient,   // 5xx, SlowDown, timeout, connection reset: retry later
	kSystemic,    // AccessDenied, NoSuchBucket, bad credentials: pause everything
	kNotFound,    // object does not exist
	kIntegrity,   // checksum / ETag / size mismatch: never accept the bytes
	kInterrupted, // the interrupt probe asked us to stop
	kClient,      // other 4xx that retrying will not fix
	kProtocol,    // the server's answer does not follow the S3 API: retrying will not fix it
	kTooLarge,    // the report can never be offloaded as it is (e.g. its text would exceed 1 GB)
	kExists,      // a conditional PUT was refused: an object already exists at the key, and it is not ours to replace
	kInternal,    // bug or resource exhaustion
};

const char *ErrorKindName(ErrorKind kind);

class Error : public std::runtime_error {
  public:
	// sqlstate is the five-character PostgreSQL SQLSTATE, e.g. "58030".
	Error(ErrorKind kind, std::string sqlstate, const std::string &message, std::string detail = {},
	      std::string hint = {})
	    : std::runtime_error(message), kind_(kind), sqlstate_(std::move(sqlstate)), detail_(std::move(detail)),
	      hint_(std::move(hint)) {
	}

	ErrorKind kind() const {
		return kind_;
	}
	const std::string &sqlstate() const {
		return sqlstate_;
	}
	const std::string &detail() const {
		return detail_;
	}
	const std::string &hint() const {
		return hint_;
	}
	// The server never answered (timeout, connection refused or lost). When
	// every request of a batch ends so, the endpoint is down, not the reports.
	bool no_answer() const {
		return no_answer_;
	}
	Error &MarkNoAnswer() {
		no_answer_ = true;
		return *this;
	}

  private:
	bool no_answer_ = false;
	ErrorKind kind_;
	std::string sqlstate_;
	std::string detail_;
	std::string hint_;
};

// SQLSTATEs used by the core (see PostgreSQL's errcodes.txt).
namespace sqlstate {
inline constexpr const char *kInvalidParameterValue = "22023";
inline constexpr const char *kConfigFileError = "F0000";
inline constexpr const char *kIoError = "58030";
inline constexpr const char *kConnectionFailure = "08006";
inline constexpr const char *kInsufficientPrivilege = "42501";
inline constexpr const char *kDataCorrupted = "XX001";
inline constexpr const char *kQueryCanceled = "57014";
inline constexpr const char *kOutOfMemory = "53200";
inline constexpr const char *kInternalError = "XX000";
inline constexpr const char *kNoDataFound = "P0002";
inline constexpr const char *kUndefinedObject = "42704";
inline constexpr const char *kDuplicateObject = "42710";
inline constexpr const char *kProtocolViolation = "08P01";
inline constexpr const char *kInvalidAuthorization = "28000"; // invalid_authorization_specification
inline constexpr const char *kUnableToConnect = "08001";      // sqlclient_unable_to_establish_sqlconnection
} // namespace sqlstate

} // namespace reportstore
