//! The query protocol's translation: each flattened form, the bounds, the XML answers.

use serde_json::json;

use super::*;

const ENDPOINT: &str = "http://127.0.0.1:9/";

fn parts(method: &str, uri: &str, content_type: Option<&str>) -> Parts {
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(()).unwrap().into_parts().0
}

fn form(uri: &str) -> Parts {
    parts(
        "POST",
        uri,
        Some("application/x-www-form-urlencoded; charset=utf-8"),
    )
}

/// The JSON input of a form body posted to `/` (with an `Action`).
fn input(body: &str) -> Result<Value, SqsError> {
    let body = format!("Action=ListQueues&{body}");
    translate(&form("/"), body.as_bytes(), ENDPOINT).map(|t| Value::Object(t.input))
}

fn refused(body: &str) -> SqsError {
    input(body).expect_err(body)
}

#[test]
fn query_requests_are_told_apart_from_the_servers_other_paths() {
    // Goal: form posts and GETs with Action on / and queue paths; never a server path.
    assert!(is_query(&form("/")));
    assert!(is_query(&form("/project/queue")));
    assert!(is_query(&parts("GET", "/?Action=ListQueues", None)));
    assert!(is_query(&parts("POST", "/p/q?Action=DeleteQueue", None)));
    assert!(!is_query(&parts("GET", "/?Version=1", None)));
    assert!(!is_query(&parts("PUT", "/?Action=ListQueues", None)));
    assert!(!is_query(&parts("POST", "/", Some("application/json"))));
    for path in [
        "/v1.0/p/queues",
        "/v2/p/queues",
        "/v2/p",
        "/v3/auth",
        "/admin/tenants",
        "/admin/cluster",
        "/metrics",
        "/healthz",
        "/readyz",
        "/a/b/c",
        "//q",
    ] {
        assert!(!is_query(&form(path)), "{path}");
        assert!(
            !is_query(&parts("GET", &format!("{path}?Action=ListQueues"), None)),
            "{path}"
        );
    }
}

#[test]
fn scalars_and_the_action_translate_and_the_path_names_the_queue() {
    let request = form("/proj/orders?Action=SendMessage");
    let translated = translate(
        &request,
        b"MessageBody=a+b%26c&DelaySeconds=5&Version=2012-11-05",
        ENDPOINT,
    )
    .unwrap();
    assert_eq!(translated.action, "SendMessage");
    assert_eq!(
        Value::Object(translated.input),
        json!({"MessageBody": "a b&c", "DelaySeconds": "5",
               "QueueUrl": "http://127.0.0.1:9/proj/orders"})
    );
    // A QueueUrl given wins over the path.
    let given = translate(&form("/p/q"), b"Action=DeleteQueue&QueueUrl=u", ENDPOINT).unwrap();
    assert_eq!(given.input["QueueUrl"], "u");
    // On `/`, no QueueUrl is made up.
    let root = translate(&form("/"), b"Action=ListQueues", ENDPOINT).unwrap();
    assert!(root.input.is_empty());
    assert_eq!(
        translate(&form("/"), b"QueueName=q", ENDPOINT)
            .unwrap_err()
            .name,
        "MissingParameter"
    );
}

#[test]
fn every_flattened_list_and_map_translates() {
    let body = "AttributeName.1=All&AttributeName.3=SentTimestamp\
        &MessageAttributeName.1=color&MessageSystemAttributeName.1=SenderId\
        &TagKey.2=team&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=30\
        &Attribute.2.Name=DelaySeconds&Attribute.2.Value=0&Tag.1.Key=team&Tag.1.Value=core\
        &MessageAttribute.1.Name=color&MessageAttribute.1.Value.DataType=String\
        &MessageAttribute.1.Value.StringValue=red&MessageAttribute.2.Name=raw\
        &MessageAttribute.2.Value.DataType=Binary&MessageAttribute.2.Value.BinaryValue=AAE%3D\
        &MessageSystemAttribute.1.Name=AWSTraceHeader\
        &MessageSystemAttribute.1.Value.DataType=String\
        &MessageSystemAttribute.1.Value.StringValue=Root%3D1";
    assert_eq!(
        input(body).unwrap(),
        json!({
            "AttributeNames": ["All", "SentTimestamp"],
            "MessageAttributeNames": ["color"],
            "MessageSystemAttributeNames": ["SenderId"],
            "TagKeys": ["team"],
            "Attributes": {"VisibilityTimeout": "30", "DelaySeconds": "0"},
            "tags": {"team": "core"},
            "MessageAttributes": {
                "color": {"DataType": "String", "StringValue": "red"},
                "raw": {"DataType": "Binary", "BinaryValue": "AAE="},
            },
            "MessageSystemAttributes": {
                "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1"},
            },
        })
    );
}

#[test]
fn batch_entries_translate_with_their_nested_attributes() {
    let send = "QueueUrl=u\
        &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two\
        &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one\
        &SendMessageBatchRequestEntry.1.DelaySeconds=3\
        &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
        &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=Number\
        &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=7";
    assert_eq!(
        input(send).unwrap(),
        json!({"QueueUrl": "u", "Entries": [
            {"Id": "a", "MessageBody": "one", "DelaySeconds": "3",
             "MessageAttributes": {"k": {"DataType": "Number", "StringValue": "7"}}},
            {"Id": "b", "MessageBody": "two"},
        ]})
    );
    let delete = "DeleteMessageBatchRequestEntry.1.Id=a\
        &DeleteMessageBatchRequestEntry.1.ReceiptHandle=h";
    assert_eq!(
        input(delete).unwrap(),
        json!({"Entries": [{"Id": "a", "ReceiptHandle": "h"}]})
    );
    let change = "ChangeMessageVisibilityBatchRequestEntry.10.Id=z\
        &ChangeMessageVisibilityBatchRequestEntry.10.ReceiptHandle=h\
        &ChangeMessageVisibilityBatchRequestEntry.10.VisibilityTimeout=60";
    assert_eq!(
        input(change).unwrap(),
        json!({"Entries": [{"Id": "z", "ReceiptHandle": "h", "VisibilityTimeout": "60"}]})
    );
}

#[test]
fn indexes_are_bounded_and_well_formed() {
    // Goal: each bound at its edge, and every malformed index an SQS error.
    let at_edge = format!("AttributeName.{MEMBER_INDEX_MAX}=All");
    assert!(input(&at_edge).is_ok());
    for body in [
        format!("AttributeName.{}=All", MEMBER_INDEX_MAX + 1),
        format!("SendMessageBatchRequestEntry.{}.Id=a", ENTRY_INDEX_MAX + 1),
        "AttributeName.0=All".to_string(),
        "AttributeName.01=All".to_string(),
        "AttributeName.+1=All".to_string(),
        "AttributeName.x=All".to_string(),
        "AttributeName.=All".to_string(),
        "AttributeName.99999999999999999999999=All".to_string(),
        "Attribute.1.Name".to_string(),
    ] {
        let error = refused(&body);
        assert!(
            ["InvalidParameterValue", "MissingParameter"].contains(&error.name),
            "{body}: {error:?}"
        );
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Parameters of one request are bounded too.
    let many: Vec<String> = (0..=PARAMETERS_MAX).map(|i| format!("x{i}=1")).collect();
    let error = refused(&many.join("&"));
    assert!(error.message.contains("at most"), "{error:?}");
}

#[test]
fn unknown_duplicate_and_incomplete_parameters_are_refused() {
    for body in [
        "Bogus=1",
        "QueueName=a&QueueName=b",
        "Action=ListQueues&Action=ListQueues",
        "Attribute.1.Name=A",
        "Attribute.1.Value=1",
        "Attribute.1.Name=A&Attribute.1.Value=1&Attribute.2.Name=A&Attribute.2.Value=2",
        "Attribute.1.Name=A&Attribute.1.Name=B&Attribute.1.Value=1",
        "Attribute.1.Other=x",
        "AttributeName.1.Deeper=x",
        "MessageAttribute.1.Value.DataType=String",
        "MessageAttribute.1.Name=a&MessageAttribute.1.Value.Colour=x",
        "MessageAttribute.1.Name=a&MessageAttribute.1.Value.StringValue=x\
         &MessageAttribute.1.Value.StringValue=y",
        "Unknown.1=x",
        "SendMessageBatchRequestEntry.1.Bogus=x",
        "SendMessageBatchRequestEntry.1.SendMessageBatchRequestEntry.1.Id=x",
        "SendMessageBatchRequestEntry.1.Id=a&DeleteMessageBatchRequestEntry.1.Id=b",
    ] {
        let error = refused(body);
        assert!(
            ["InvalidParameterValue", "MissingParameter"].contains(&error.name),
            "{body}: {error:?}"
        );
    }
}

#[test]
fn answers_use_sqs_element_names() {
    let received = json!({"Messages": [{
        "MessageId": "m1", "ReceiptHandle": "h", "MD5OfBody": "d", "Body": "hi",
        "Attributes": {"SentTimestamp": "5"},
        "MessageAttributes": {"color": {"DataType": "String", "StringValue": "red"}},
    }]});
    let xml = answer_xml("ReceiveMessage", received.as_object().unwrap(), "rid");
    assert_eq!(
        xml,
        format!(
            "<ReceiveMessageResponse xmlns=\"{XMLNS}\"><ReceiveMessageResult><Message>\
             <Attribute><Name>SentTimestamp</Name><Value>5</Value></Attribute>\
             <Body>hi</Body><MD5OfBody>d</MD5OfBody>\
             <MessageAttribute><Name>color</Name><Value><DataType>String</DataType>\
             <StringValue>red</StringValue></Value></MessageAttribute>\
             <MessageId>m1</MessageId><ReceiptHandle>h</ReceiptHandle></Message>\
             </ReceiveMessageResult><ResponseMetadata><RequestId>rid</RequestId>\
             </ResponseMetadata></ReceiveMessageResponse>"
        )
    );
    let listed = json!({"QueueUrls": ["u1", "u2"]});
    let xml = answer_xml("ListQueues", listed.as_object().unwrap(), "r");
    assert!(
        xml.contains(
            "<ListQueuesResult><QueueUrl>u1</QueueUrl><QueueUrl>u2</QueueUrl></ListQueuesResult>"
        ),
        "{xml}"
    );
    let batch = json!({"Successful": [{"Id": "a"}],
                       "Failed": [{"Id": "b", "Code": "C", "Message": "M", "SenderFault": true}]});
    let xml = answer_xml("DeleteMessageBatch", batch.as_object().unwrap(), "r");
    assert!(
        xml.contains(
            "<DeleteMessageBatchResult><BatchResultErrorEntry><Code>C</Code><Id>b</Id>\
         <Message>M</Message><SenderFault>true</SenderFault></BatchResultErrorEntry>\
         <DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>\
         </DeleteMessageBatchResult>"
        ),
        "{xml}"
    );
    let attributes = json!({"Attributes": {"VisibilityTimeout": "30"}});
    let xml = answer_xml("GetQueueAttributes", attributes.as_object().unwrap(), "r");
    assert!(xml.contains("<Attribute><Name>VisibilityTimeout</Name><Value>30</Value></Attribute>"));
    let tags = json!({"Tags": {"team": "core"}});
    let xml = answer_xml("ListQueueTags", tags.as_object().unwrap(), "r");
    assert!(
        xml.contains("<Tag><Key>team</Key><Value>core</Value></Tag>"),
        "{xml}"
    );
    // Operations without a result answer the metadata alone; an empty receive has its
    // (empty) result.
    assert_eq!(
        answer_xml("DeleteQueue", &Map::new(), "r"),
        format!("<DeleteQueueResponse xmlns=\"{XMLNS}\"><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeleteQueueResponse>")
    );
    assert!(answer_xml("ReceiveMessage", &Map::new(), "r")
        .contains("<ReceiveMessageResult></ReceiveMessageResult>"));
}

#[test]
fn text_is_escaped_and_characters_xml_cannot_carry_are_replaced() {
    let answer = json!({"Messages": [{"Body": "<a href=\"x\">&'\r\n\t\u{1}\u{FFFE}é😀</a>"}]});
    let xml = answer_xml("ReceiveMessage", answer.as_object().unwrap(), "<id>");
    assert!(
        xml.contains("<Body>&lt;a href=&quot;x&quot;&gt;&amp;&apos;&#xD;\n\t\u{FFFD}\u{FFFD}é😀&lt;/a&gt;</Body>"),
        "{xml}"
    );
    assert!(xml.contains("<RequestId>&lt;id&gt;</RequestId>"));
}

#[test]
fn no_element_name_comes_from_a_clients_text() {
    // A message attribute's value object is stored as the client sent it, extra keys too.
    let answer = json!({"Messages": [{"MessageAttributes": {"a": {
        "DataType": "String", "StringValue": "x", "<evil/>": "y", "a b": "z", "1a": "w",
    }}}]});
    let xml = answer_xml("ReceiveMessage", answer.as_object().unwrap(), "r");
    assert!(
        xml.contains(
            "<MessageAttribute><Name>a</Name><Value><DataType>String</DataType>\
         <StringValue>x</StringValue></Value></MessageAttribute>"
        ),
        "{xml}"
    );
}

#[test]
fn errors_are_xml_documents_with_the_query_code() {
    let error = SqsError::queue_does_not_exist();
    let id = HeaderValue::from_static("abc");
    let response = error_response(&error, &id);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], XML_CONTENT_TYPE);
    assert_eq!(response.headers()["x-amzn-requestid"], "abc");
    assert_eq!(
        response.headers()["x-amzn-query-error"],
        "AWS.SimpleQueueService.NonExistentQueue;Sender"
    );
    assert_eq!(
        std::str::from_utf8(response.body()).unwrap(),
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type>\
             <Code>AWS.SimpleQueueService.NonExistentQueue</Code>\
             <Message>The specified queue does not exist.</Message><Detail/></Error>\
             <RequestId>abc</RequestId></ErrorResponse>"
        )
    );
    let receiver = error_xml(&SqsError::unavailable("a & b"), "r");
    assert!(receiver.contains(
        "<Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>a &amp; b</Message>"
    ));
}

#[test]
fn refusals_made_before_the_adapter_answer_in_the_requests_protocol() {
    let refusal = || {
        let mut response = Response::new(Bytes::from_static(
            br#"{"error_code": "DMS.00400413", "error_msg": "The request body is too large."}"#,
        ));
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        response
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_static("id1"));
        response
    };
    let answer = super::super::as_sqs_error(&form("/p/q"), refusal());
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.headers()["content-type"], XML_CONTENT_TYPE);
    let body = std::str::from_utf8(answer.body()).unwrap();
    assert!(
        body.contains(
            "<Code>RequestEntityTooLarge</Code><Message>The request body is too large.</Message>"
        ) && body.contains("<RequestId>id1</RequestId>"),
        "{body}"
    );
    // A JSON-protocol request gets the JSON form; a DMS request keeps its answer.
    let mut json = parts("POST", "/", Some("application/x-amz-json-1.0"));
    json.headers.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonSQS.SendMessage"),
    );
    let answer = super::super::as_sqs_error(&json, refusal());
    assert!(answer.body().starts_with(b"{\"__type\""));
    let dms = parts("POST", "/v2/p/queues", Some("application/json"));
    let answer = super::super::as_sqs_error(&dms, refusal());
    assert!(answer.body().starts_with(b"{\"error_code\""));
}

#[test]
fn tag_queue_takes_the_tag_form_as_its_tags_member() {
    let parts = http::Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let body = b"Action=TagQueue&QueueUrl=u&Tag.1.Key=team&Tag.1.Value=core";
    let translated = translate(&parts, body, "http://h").unwrap();
    assert_eq!(
        Value::Object(translated.input),
        json!({"QueueUrl": "u", "Tags": {"team": "core"}})
    );
}
