#include "core/error.hpp"

namespace reportstore {

const char *ErrorKindName(ErrorKind kind) {
	switch (kind) {
	case ErrorKind::kConfig:
		return "config";
	case ErrorKind::kTransient:
		return "transient";
	case ErrorKind::kSystemic:
		return "systemic";
	case ErrorKind::kNotFound:
		return "not_found";
	case ErrorKind::kIntegrity:
		return "integrity";
	case ErrorKind::kInterrupted:
		return "interrupted";
	case ErrorKind::kClient:
		return "client";
	case ErrorKind::kProtocol:
		return "protocol";
	case ErrorKind::kTooLarge:
		return "too_large";
	case ErrorKind::kExists:
		return "exists";
	case ErrorKind::kInternal:
		return "internal";
	}
	return "unknown";
}

} // namespace reportstore
