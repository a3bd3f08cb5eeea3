// Tests of the S3 XML bodies: parsing (errors, listings, lifecycle, the
// multipart responses) and the documents the client writes.
#include "core/s3/xml.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <unistd.h>

#include "core/error.hpp"

namespace reportstore::s3 {
namespace {

TEST(S3Xml, ParsesAnErrorBody) {
	const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<Error>
  <Code>NoSuchKey</Code>
  <Message>The specified key does not exist.</Message>
  <Key>reports/x y.json</Key>
  <BucketName>reports</BucketName>
  <Resource>/reports/reports/x%20y.json</Resource>
  <RequestId>4442587FB7D0A2F9</RequestId>
  <HostId>abc</HostId>
</Error>)";
	ErrorBody b;
	ASSERT_TRUE(ParseErrorBody(xml, &b));
	EXPECT_EQ(b.code, "NoSuchKey");
	EXPECT_EQ(b.message, "The specified key does not exist.");
	EXPECT_EQ(b.key, "reports/x y.json");
	EXPECT_EQ(b.bucket_name, "reports");
	EXPECT_EQ(b.resource, "/reports/reports/x%20y.json");
	EXPECT_EQ(b.request_id, "4442587FB7D0A2F9");
}

TEST(S3Xml, ErrorBodyWithNamespaceAndEscapes) {
	const std::string xml = "<Error xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Code>AccessDenied</Code>"
	                        "<Message>a &amp; b &lt;c&gt;</Message></Error>";
	ErrorBody b;
	ASSERT_TRUE(ParseErrorBody(xml, &b));
	EXPECT_EQ(b.code, "AccessDenied");
	EXPECT_EQ(b.message, "a & b <c>");
}

TEST(S3Xml, ErrorBodyRejectsNonXml) {
	ErrorBody b;
	EXPECT_FALSE(ParseErrorBody("", &b));
	EXPECT_FALSE(ParseErrorBody("Internal Server Error", &b));
	EXPECT_FALSE(ParseErrorBody("<html><body>502 Bad Gateway</body></html>", &b));
	EXPECT_FALSE(ParseErrorBody("<Error><Code>X</Code>", &b)); // truncated
	EXPECT_FALSE(ParseErrorBody("{\"error\": \"json\"}", &b));
	EXPECT_FALSE(ParseErrorBody("<Other><Code>X</Code></Other>", &b));
	EXPECT_FALSE(ParseErrorBody("<Error xmlns=\"urn:other\"><Code>X</Code></Error>", &b));
}

TEST(S3Xml, ListAcceptsTheNamespaceS3rverUses) {
	ListPage page = ParseListObjectsV2("<ListBucketResult xmlns=\"http://doc.s3.amazonaws.com/2006-03-01/\">"
	                                   "<Contents><Key>reports/a</Key><Size>3</Size></Contents></ListBucketResult>");
	ASSERT_EQ(page.objects.size(), 1u);
	EXPECT_EQ(page.objects[0].key, "reports/a");
}

TEST(S3Xml, EntitiesAreNotSubstituted) {
	// Neither internal nor external entities are expanded: documents with a
	// DTD are refused outright.
	const std::string xxe = R"(<?xml version="1.0"?>
<!DOCTYPE Error [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Error><Code>&xxe;</Code><Message>m</Message></Error>)";
	ErrorBody b;
	EXPECT_FALSE(ParseErrorBody(xxe, &b));
	EXPECT_EQ(b.code.find("root"), std::string::npos);

	const std::string laughs = R"(<?xml version="1.0"?>
<!DOCTYPE Error [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<Error><Code>&d;</Code></Error>)";
	EXPECT_FALSE(ParseErrorBody(laughs, &b));
	EXPECT_THROW(ParseListObjectsV2("<!DOCTYPE x [<!ENTITY e \"v\">]><ListBucketResult><Name>&e;</Name>"
	                                "</ListBucketResult>"),
	             Error);
}

TEST(S3Xml, OversizedBodiesAreRefused) {
	std::string big = "<Error><Code>X</Code><Message>" + std::string(2 << 20, 'm') + "</Message></Error>";
	ErrorBody b;
	EXPECT_FALSE(ParseErrorBody(big, &b));
}

TEST(S3Xml, ParsesListObjectsV2) {
	const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>reports</Name>
  <Prefix>reports/</Prefix>
  <KeyCount>2</KeyCount>
  <MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>reports/a/report.json</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>reports/b &amp; c/report.csv</Key>
    <LastModified>2009-10-12T17:50:31.000Z</LastModified>
    <ETag>"0123456789abcdef0123456789abcdef-2"</ETag>
    <Size>0</Size>
  </Contents>
</ListBucketResult>)";
	ListPage page = ParseListObjectsV2(xml);
	ASSERT_EQ(page.objects.size(), 2u);
	EXPECT_TRUE(page.is_truncated);
	EXPECT_EQ(page.next_continuation_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	EXPECT_EQ(page.objects[0].key, "reports/a/report.json");
	EXPECT_EQ(page.objects[0].size, 434234u);
	EXPECT_EQ(page.objects[0].etag, "fba9dede5f27731c9771645a39863328");
	EXPECT_EQ(page.objects[0].last_modified, "2009-10-12T17:50:30.000Z");
	EXPECT_EQ(page.objects[1].key, "reports/b & c/report.csv");
	EXPECT_EQ(page.objects[1].size, 0u);
	EXPECT_EQ(page.objects[1].etag, "0123456789abcdef0123456789abcdef-2");
}

TEST(S3Xml, ListWithoutNamespaceAndEmpty) {
	ListPage page = ParseListObjectsV2("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
	EXPECT_TRUE(page.objects.empty());
	EXPECT_FALSE(page.is_truncated);
	EXPECT_TRUE(page.next_continuation_token.empty());
}

TEST(S3Xml, MalformedListThrows) {
	const char *bad[] = {
	    "",
	    "not xml",
	    "<ListBucketResult><Contents><Key>a</Key>", // truncated
	    "<Error><Code>AccessDenied</Code></Error>",
	    "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",              // no key
	    "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>", // bad size
	    "<ListBucketResult><Contents><Key>a</Key><Size>1x</Size></Contents></ListBucketResult>",
	    "<ListBucketResult><Contents><Key>a</Key><Size>99999999999999999999999</Size></Contents></ListBucketResult>",
	    "<ListBucketResult><IsTruncated>maybe</IsTruncated></ListBucketResult>",
	    "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", // no token
	    "<ListBucketResult xmlns=\"urn:not-s3\"></ListBucketResult>",
	};
	for (const char *xml : bad) {
		try {
			ParseListObjectsV2(xml);
			ADD_FAILURE() << "accepted: " << xml;
		} catch (const Error &e) {
			EXPECT_EQ(e.kind(), ErrorKind::kProtocol) << xml;
			EXPECT_EQ(e.sqlstate(), "08P01") << xml;
			EXPECT_FALSE(std::string(e.what()).empty());
		}
	}
}

TEST(S3Xml, ParseErrorsAreNotPrintedToStderr) {
	// Redirect stderr to a pipe and make sure libxml2 stays silent.
	fflush(stderr);
	int pipefd[2];
	ASSERT_EQ(pipe(pipefd), 0);
	const int saved = dup(2);
	dup2(pipefd[1], 2);
	ErrorBody b;
	EXPECT_FALSE(ParseErrorBody("<Error><Code>X</Code", &b));
	EXPECT_FALSE(ParseErrorBody("<a></b>", &b));
	EXPECT_THROW(ParseListObjectsV2("<ListBucketResult><oops></ListBucketResult>"), Error);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(pipefd[1]);
	char buf[256];
	const ssize_t n = read(pipefd[0], buf, sizeof buf);
	close(pipefd[0]);
	EXPECT_EQ(n, 0) << std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

TEST(S3Xml, MalformedListDetailNamesTheProblem) {
	try {
		ParseListObjectsV2("<ListBucketResult><Contents></ListBucketResult>");
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(e.detail().find("line"), std::string::npos) << e.detail();
	}
}

TEST(S3Xml, ParsesLifecycleRules) {
	// As AWS returns it: Filter/Prefix, Filter/And/Prefix, legacy Rule/Prefix,
	// a rule without day-based expiration, another namespace prefix.
	const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Rule>
    <ID>reportstore-expiry</ID>
    <Filter><Prefix>reports/</Prefix></Filter>
    <Status>Enabled</Status>
    <Expiration><Days>30</Days></Expiration>
  </Rule>
  <Rule>
    <ID>tagged &amp; old</ID>
    <Filter><And><Prefix>tmp/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter>
    <Status>Disabled</Status>
    <Expiration><Days>7</Days></Expiration>
    <NoncurrentVersionExpiration><NoncurrentDays>99</NoncurrentDays></NoncurrentVersionExpiration>
  </Rule>
  <Rule>
    <ID>legacy</ID>
    <Prefix>logs/</Prefix>
    <Status>Enabled</Status>
    <Transition><Days>10</Days><StorageClass>GLACIER</StorageClass></Transition>
    <Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>
  </Rule>
  <Rule>
    <Filter></Filter>
    <Status>Enabled</Status>
    <AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>
  </Rule>
</LifecycleConfiguration>)";
	const std::vector<LifecycleRule> rules = ParseLifecycleRules(xml);
	ASSERT_EQ(rules.size(), 4u);
	EXPECT_EQ(rules[0].id, "reportstore-expiry");
	EXPECT_EQ(rules[0].prefix, "reports/");
	EXPECT_EQ(rules[0].status, "Enabled");
	EXPECT_EQ(rules[0].expiration_days, 30);
	EXPECT_EQ(rules[0].abort_incomplete_days, 0);
	EXPECT_EQ(rules[1].id, "tagged & old");
	EXPECT_EQ(rules[1].prefix, "tmp/");
	EXPECT_EQ(rules[1].status, "Disabled");
	EXPECT_EQ(rules[1].expiration_days, 7);
	EXPECT_EQ(rules[2].id, "legacy");
	EXPECT_EQ(rules[2].prefix, "logs/");
	EXPECT_EQ(rules[2].expiration_days, 0); // Transition days are not expiration
	EXPECT_EQ(rules[3].id, "");
	EXPECT_EQ(rules[3].prefix, "");
	EXPECT_EQ(rules[3].expiration_days, 0);
	EXPECT_EQ(rules[3].abort_incomplete_days, 1);
}

TEST(S3Xml, LifecycleNamespacesTolerated) {
	for (const std::string &open :
	     {std::string("<LifecycleConfiguration>"), std::string("<LifecycleConfiguration xmlns=\"urn:other\">"),
	      std::string("<s3:LifecycleConfiguration xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">")}) {
		SCOPED_TRACE(open);
		const bool prefixed = open.compare(0, 4, "<s3:") == 0;
		const std::string p = prefixed ? "s3:" : "";
		const std::string xml = open + "<" + p + "Rule><" + p + "ID>r</" + p + "ID><" + p + "Filter><" + p +
		                        "Prefix>x/</" + p + "Prefix></" + p + "Filter><" + p + "Status>Enabled</" + p +
		                        "Status><" + p + "Expiration><" + p + "Days>5</" + p + "Days></" + p + "Expiration></" +
		                        p + "Rule></" + p + "LifecycleConfiguration>";
		const auto rules = ParseLifecycleRules(xml);
		ASSERT_EQ(rules.size(), 1u);
		EXPECT_EQ(rules[0].id, "r");
		EXPECT_EQ(rules[0].prefix, "x/");
		EXPECT_EQ(rules[0].status, "Enabled");
		EXPECT_EQ(rules[0].expiration_days, 5);
	}
	EXPECT_TRUE(ParseLifecycleRules("").empty());
	EXPECT_TRUE(ParseLifecycleRules("<LifecycleConfiguration/>").empty());
}

TEST(S3Xml, MalformedLifecycleThrows) {
	const char *bad[] = {
	    "not xml",
	    "<LifecycleConfiguration><Rule>",
	    "<Error><Code>NoSuchLifecycleConfiguration</Code></Error>",
	    "<LifecycleConfiguration><Rule><Expiration><Days>-1</Days></Expiration></Rule></LifecycleConfiguration>",
	    "<LifecycleConfiguration><Rule><Expiration><Days>3x</Days></Expiration></Rule></LifecycleConfiguration>",
	    "<LifecycleConfiguration><Rule><Expiration><Days>99999999999</Days></Expiration></Rule>"
	    "</LifecycleConfiguration>",
	    "<!DOCTYPE x [<!ENTITY e \"v\">]><LifecycleConfiguration><Rule><ID>&e;</ID></Rule></LifecycleConfiguration>",
	};
	for (const char *xml : bad) {
		try {
			ParseLifecycleRules(xml);
			ADD_FAILURE() << "accepted: " << xml;
		} catch (const Error &e) {
			EXPECT_EQ(e.kind(), ErrorKind::kProtocol) << xml;
			EXPECT_EQ(e.sqlstate(), "08P01") << xml;
			EXPECT_EQ(std::string(e.what()), "could not parse S3 lifecycle configuration");
			EXPECT_FALSE(e.detail().empty());
		}
	}
}

// --- Multipart responses -------------------------------------------------------

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
	EXPECT_EQ(
	    ParseInitiateMultipartUpload("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
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
	for (const char *xml :
	     {"", "not xml",
	      "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
	      "</InitiateMultipartUploadResult>",
	      "<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>",
	      "<InitiateMultipartUploadResult><UploadId>a&#10;b</UploadId>"
	      "</InitiateMultipartUploadResult>",
	      "<Other><UploadId>x</UploadId></Other>", "<InitiateMultipartUploadResult><UploadId>x</UploadId>"}) {
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
