// Parsing of the multipart upload responses (InitiateMultipartUploadResult,
// CompleteMultipartUploadResult). The client side is in s3_client_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "core/s3/xml.hpp"

namespace reportstore::s3 {
namespace {

template <typename Fn> Error Capture(Fn &&fn) {
	try {
		fn();
	} catch (const Error &e) {
		return e;
	}
	ADD_FAILURE() << "no reportstore::Error thrown";
	return Error(ErrorKind::kInternal, "XX000", "none");
}

TEST(S3MultipartXml, InitiateWithS3Namespace) {
	EXPECT_EQ(ParseInitiateMultipartUpload(
	              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	              "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	              "<Bucket>reports</Bucket><Key>a/b.json</Key>"
	              "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
	              "</InitiateMultipartUploadResult>"),
	          "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
}

TEST(S3MultipartXml, InitiateToleratesNamespacesAndWhitespace) {
	EXPECT_EQ(ParseInitiateMultipartUpload("<InitiateMultipartUploadResult><UploadId>a+b/c=</UploadId>"
	                                       "</InitiateMultipartUploadResult>"),
	          "a+b/c=");
	EXPECT_EQ(ParseInitiateMultipartUpload("\r\n  <?xml version=\"1.0\"?><s3:InitiateMultipartUploadResult "
	                                       "xmlns:s3=\"urn:other\"><s3:UploadId>x&amp;y</s3:UploadId>"
	                                       "</s3:InitiateMultipartUploadResult>"),
	          "x&y");
}

TEST(S3MultipartXml, InitiateRejectsBadDocuments) {
	for (const char *xml : {"", "not xml", "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
	                                       "</InitiateMultipartUploadResult>",
	                        "<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>",
	                        "<InitiateMultipartUploadResult><UploadId>a&#10;b</UploadId>"
	                        "</InitiateMultipartUploadResult>",
	                        "<Other><UploadId>x</UploadId></Other>",
	                        "<InitiateMultipartUploadResult><UploadId>x</UploadId>"}) {
		SCOPED_TRACE(xml);
		Error e = Capture([&] { ParseInitiateMultipartUpload(xml); });
		EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
		EXPECT_EQ(e.sqlstate(), "08P01");
	}
	Error e = Capture([&] {
		ParseInitiateMultipartUpload("<InitiateMultipartUploadResult><UploadId>" + std::string(1025, 'u') +
		                             "</UploadId></InitiateMultipartUploadResult>");
	});
	EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
	Error doctype = Capture([&] {
		ParseInitiateMultipartUpload("<!DOCTYPE x [<!ENTITY e \"boom\">]><InitiateMultipartUploadResult>"
		                             "<UploadId>&e;</UploadId></InitiateMultipartUploadResult>");
	});
	EXPECT_EQ(doctype.kind(), ErrorKind::kProtocol);
}

TEST(S3MultipartXml, CompleteResult) {
	const CompleteMultipartUploadResult r = ParseCompleteMultipartUpload(
	    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	    "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	    "<Location>https://reports.s3.amazonaws.com/a/b.json</Location><Bucket>reports</Bucket>"
	    "<Key>a/b.json</Key><ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>"
	    "</CompleteMultipartUploadResult>");
	EXPECT_FALSE(r.is_error);
	EXPECT_EQ(r.etag, "3858f62230ac3c915f300c664312c11f-9");
	EXPECT_EQ(r.bucket, "reports");
	EXPECT_EQ(r.key, "a/b.json");
	EXPECT_EQ(r.location, "https://reports.s3.amazonaws.com/a/b.json");

	// Keep-alive padding before the document, another namespace, plain quotes.
	const CompleteMultipartUploadResult padded = ParseCompleteMultipartUpload(
	    "\n \n \n<?xml version=\"1.0\"?><x:CompleteMultipartUploadResult xmlns:x=\"urn:y\">"
	    "<x:ETag>\"abc-2\"</x:ETag></x:CompleteMultipartUploadResult>");
	EXPECT_FALSE(padded.is_error);
	EXPECT_EQ(padded.etag, "abc-2");

	// moto's root element.
	const CompleteMultipartUploadResult moto = ParseCompleteMultipartUpload(
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CompleteMultipartUploadResponse "
	    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://reports.s3.amazonaws.com/probe/x"
	    "</Location><Bucket>reports</Bucket><Key>probe/x</Key><ETag>\"cb8d7289925309a05b2db09b7709c264-1\"</ETag>"
	    "</CompleteMultipartUploadResponse>");
	EXPECT_FALSE(moto.is_error);
	EXPECT_EQ(moto.etag, "cb8d7289925309a05b2db09b7709c264-1");
}

TEST(S3MultipartXml, CompleteErrorIn200) {
	const CompleteMultipartUploadResult r = ParseCompleteMultipartUpload(
	    "\n   \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>"
	    "<Message>We encountered an internal error. Please try again.</Message>"
	    "<RequestId>656c76696e6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/"
	    "C1NPcfTWAtRPfTaOFg==</HostId></Error>");
	EXPECT_TRUE(r.is_error);
	EXPECT_EQ(r.error.code, "InternalError");
	EXPECT_EQ(r.error.message, "We encountered an internal error. Please try again.");
	EXPECT_EQ(r.error.request_id, "656c76696e6727732072657175657374");
	EXPECT_TRUE(r.etag.empty());

	const CompleteMultipartUploadResult ns = ParseCompleteMultipartUpload(
	    "<Error xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Code>InvalidPart</Code></Error>");
	EXPECT_TRUE(ns.is_error);
	EXPECT_EQ(ns.error.code, "InvalidPart");
}

TEST(S3MultipartXml, CompleteRejectsBadDocuments) {
	for (const char *xml : {"", "   ", "<ListBucketResult/>", "<CompleteMultipartUploadResult><ETag>x</ETag>"}) {
		SCOPED_TRACE(xml);
		Error e = Capture([&] { ParseCompleteMultipartUpload(xml); });
		EXPECT_EQ(e.kind(), ErrorKind::kProtocol);
		EXPECT_EQ(e.sqlstate(), "08P01");
		EXPECT_EQ(e.hint().find("Retry"), std::string::npos) << e.hint();
	}
}

// Ceph RGW 16 answers <ETag></ETag>: a result without an ETag is not an
// error here; the client takes the ETag from the stored object.
TEST(S3MultipartXml, CompleteWithoutEtag) {
	for (const char *xml : {"<CompleteMultipartUploadResult><Key>k</Key></CompleteMultipartUploadResult>",
	                        "<CompleteMultipartUploadResult><ETag></ETag></CompleteMultipartUploadResult>",
	                        "<CompleteMultipartUploadResult><ETag>&quot;&quot;</ETag>"
	                        "</CompleteMultipartUploadResult>"}) {
		SCOPED_TRACE(xml);
		const CompleteMultipartUploadResult r = ParseCompleteMultipartUpload(xml);
		EXPECT_FALSE(r.is_error);
		EXPECT_EQ(r.etag, "");
	}
}

} // namespace
} // namespace reportstore::s3
