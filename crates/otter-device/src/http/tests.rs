//! Unit tests of the HTTP pieces.

use super::*;
use std::vec::Vec;

fn parse(s: &[u8]) -> Result<HeadStep, DeviceError> {
    let mut buf = [0u8; 512];
    let mut r = HeadReader::new();
    r.feed(&mut buf, &Limits::DEFAULT, s, 0)
}

#[test]
fn head_fields() {
    let HeadStep::Complete { consumed, head } = parse(b"POST /update?x=1 HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello").unwrap() else { panic!() };
    assert_eq!(consumed, 89);
    assert_eq!(head.method, Method::Post);
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.expect_continue && head.close);
}

#[test]
fn http10_closes_by_default() {
    let HeadStep::Complete { head, .. } = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap() else {
        panic!()
    };
    assert!(head.close);
}

#[test]
fn chunked_decodes_split_anywhere() {
    let enc = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
    for split in 1..enc.len() {
        let mut b = BodyReader::new(Framing::Chunked, 0);
        let mut out = Vec::new();
        for piece in enc.chunks(split) {
            let n = b
                .feed(piece, &mut |d: &[u8]| {
                    out.extend_from_slice(d);
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, piece.len());
        }
        assert!(b.done());
        assert_eq!(out, b"hello world");
    }
}

#[test]
fn multipart_boundary_split_anywhere() {
    let body = b"pre\r\n--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nnot me\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nab\r\n-B\r\r\n--B--\r\nepilogue";
    for split in 1..body.len() {
        let mut m = Multipart::new(b"B").unwrap();
        let mut out = Vec::new();
        for piece in body.chunks(split) {
            m.feed(piece, &mut |d: &[u8]| {
                out.extend_from_slice(d);
                Ok(())
            })
            .unwrap();
        }
        m.finish().unwrap();
        assert_eq!(out, b"ab\r\n-B\r", "split {split}");
    }
}
