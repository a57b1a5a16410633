//! Unit tests of the S3 store's pure parts (key encoding, `Content-Range`, clipping a
//! whole-object stream, `Debug` without the secret); the S3 store against a real server
//! is tested in `tests/objects_s3.rs`.

use super::read::{clip_stream, total_of};
use super::*;
use futures_util::StreamExt;

#[test]
fn copy_sources_are_percent_encoded() {
    assert_eq!(encode_key("ws/a b/ü+x.txt"), "ws/a%20b/%C3%BC%2Bx.txt");
    assert_eq!(encode_key("a-b_c.d~e/f"), "a-b_c.d~e/f");
}

#[test]
fn content_range_gives_the_total() {
    assert_eq!(total_of("bytes 0-9/70000"), Some(70_000));
    assert_eq!(total_of("bytes */12"), Some(12));
    assert_eq!(total_of("bytes 0-9/*"), None);
    assert_eq!(total_of("garbage"), None);
}

#[tokio::test]
async fn a_whole_object_stream_is_clipped_to_the_range() {
    let whole = || -> ByteStream {
        let chunks = ["0123", "", "456", "789"].map(|c| Ok(Bytes::from_static(c.as_bytes())));
        Box::pin(futures_util::stream::iter(chunks))
    };
    let read = |range: Range<u64>| async move {
        let parts: Vec<_> = clip_stream(whole(), range).collect().await;
        parts
            .into_iter()
            .map(|p| p.unwrap())
            .fold(Vec::new(), |mut all, p| {
                assert!(!p.is_empty());
                all.extend_from_slice(&p);
                all
            })
    };
    assert_eq!(read(2..6).await, b"2345");
    assert_eq!(read(0..10).await, b"0123456789");
    assert_eq!(read(7..100).await, b"789");
    assert!(read(10..20).await.is_empty());
    assert_eq!(read(4..7).await, b"456");
}

#[tokio::test]
async fn debug_hides_the_secret() {
    let config = S3Config {
        endpoint_url: "http://127.0.0.1:9000".into(),
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "very-secret".into(),
        region: "us-east-1".into(),
        bucket: "b".into(),
    };
    let text = format!("{config:?}");
    assert!(
        !text.contains("very-secret") && text.contains("AKIDEXAMPLE"),
        "{text}"
    );
    let store = S3ObjectStore::connect(config.clone()).await.unwrap();
    let text = format!("{store:?}");
    assert!(
        !text.contains("very-secret") && text.contains("9000"),
        "{text}"
    );
    assert_eq!(store.bucket(), "b");
    let bad = S3Config {
        endpoint_url: "127.0.0.1:9000".into(),
        ..config.clone()
    };
    assert!(matches!(
        S3ObjectStore::connect(bad).await,
        Err(ArtifactError::InvalidArgument(_))
    ));
    let bad = S3Config {
        bucket: String::new(),
        ..config
    };
    assert!(matches!(
        S3ObjectStore::connect(bad).await,
        Err(ArtifactError::InvalidArgument(_))
    ));
}
