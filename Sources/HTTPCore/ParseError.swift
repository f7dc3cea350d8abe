/// Why a request could not be parsed. Each case maps to the status a server should send
/// (``status``) and a one-line ``reason``; after any error the connection must be closed,
/// since the parser can no longer tell where the next request starts.
public enum HTTPParseError: Error, Sendable, Hashable {
    /// The request line is longer than ``HTTPRequestParser/Limits/maxRequestLineLength``.
    case requestLineTooLong
    /// The header block is longer than ``HTTPRequestParser/Limits/maxHeaderBlockLength``.
    case headerBlockTooLarge
    /// More header fields than ``HTTPRequestParser/Limits/maxHeaderCount``.
    case tooManyHeaderFields
    /// A bare LF, or a CR not followed by LF, ends a line (we require CRLF).
    case invalidLineEnding
    /// The request line does not have the shape `method SP target SP version`.
    case invalidRequestLine
    /// The method is empty or not a token.
    case invalidMethod
    /// The request-target has bytes outside visible ASCII, or its form does not fit the method.
    case invalidRequestTarget
    /// The version is not `HTTP/DIGIT.DIGIT`.
    case invalidVersion
    /// A well-formed version other than HTTP/1.0 or HTTP/1.1.
    case unsupportedVersion
    /// A header name is empty or has a non-token byte, or the line has no colon.
    case invalidHeaderName
    /// Whitespace between a header name and its colon (RFC 9112 §5.1 requires 400).
    case whitespaceBeforeColon
    /// A header value contains a control byte such as CR, NUL or DEL.
    case invalidHeaderValue
    /// A header line starts with whitespace: obsolete line folding (RFC 9112 §5.2).
    case obsoleteLineFolding
    /// HTTP/1.1 request without exactly one Host header, a 1.0 request with several, or a
    /// Host value with characters no host or port has (space, `/`, `@`, ...).
    case invalidHost
    /// A Content-Length that is not 1*DIGIT or overflows.
    case invalidContentLength
    /// Several Content-Length values that differ.
    case conflictingContentLength
    /// Both Transfer-Encoding and Content-Length: a classic smuggling vector.
    case contentLengthWithTransferEncoding
    /// Transfer-Encoding whose final coding is not exactly `chunked`, or that is malformed.
    case invalidTransferEncoding
    /// Transfer-Encoding on an HTTP/1.0 request (RFC 9112 §6.1 says treat as faulty framing).
    case transferEncodingOnHTTP10
    /// A well-formed transfer coding list, ending in chunked, with codings we do not implement.
    case unsupportedTransferCoding
    /// A chunk-size line that is not HEX digits with optional extensions, or too long.
    case invalidChunkSize
    /// Chunk data not followed by CRLF.
    case invalidChunkTerminator
    /// The body is larger than ``HTTPRequestParser/Limits/maxBodyLength``.
    case bodyTooLarge
    /// The first byte was 0x16: a TLS ClientHello sent to a plain-text port. Just close.
    case tlsHandshake
    /// The HTTP/2 connection preface `PRI * HTTP/2.0`. Send 505 or close.
    case http2Preface

    /// The status code a server should answer with before closing.
    public var status: Int {
        switch self {
        case .requestLineTooLong: return 414
        case .headerBlockTooLarge, .tooManyHeaderFields: return 431
        case .unsupportedVersion, .http2Preface: return 505
        case .unsupportedTransferCoding: return 501
        case .bodyTooLarge: return 413
        case .invalidLineEnding, .invalidRequestLine, .invalidMethod, .invalidRequestTarget, .invalidVersion,
             .invalidHeaderName, .whitespaceBeforeColon, .invalidHeaderValue, .obsoleteLineFolding,
             .invalidHost, .invalidContentLength, .conflictingContentLength,
             .contentLengthWithTransferEncoding, .invalidTransferEncoding, .transferEncodingOnHTTP10,
             .invalidChunkSize, .invalidChunkTerminator, .tlsHandshake:
            return 400
        }
    }

    /// A one-line, human-readable reason (safe to send as a response body).
    public var reason: String {
        switch self {
        case .requestLineTooLong: return "request line too long"
        case .headerBlockTooLarge: return "header block too large"
        case .tooManyHeaderFields: return "too many header fields"
        case .invalidLineEnding: return "line not terminated by CRLF"
        case .invalidRequestLine: return "malformed request line"
        case .invalidMethod: return "method is not a token"
        case .invalidRequestTarget: return "malformed request target"
        case .invalidVersion: return "malformed HTTP version"
        case .unsupportedVersion: return "HTTP version not supported"
        case .invalidHeaderName: return "malformed header field name"
        case .whitespaceBeforeColon: return "whitespace between header name and colon"
        case .invalidHeaderValue: return "control character in header value"
        case .obsoleteLineFolding: return "obsolete header line folding"
        case .invalidHost: return "missing, repeated or malformed Host header"
        case .invalidContentLength: return "invalid Content-Length"
        case .conflictingContentLength: return "conflicting Content-Length values"
        case .contentLengthWithTransferEncoding: return "both Transfer-Encoding and Content-Length"
        case .invalidTransferEncoding: return "invalid Transfer-Encoding"
        case .transferEncodingOnHTTP10: return "Transfer-Encoding in an HTTP/1.0 request"
        case .unsupportedTransferCoding: return "transfer coding not implemented"
        case .invalidChunkSize: return "malformed chunk size line"
        case .invalidChunkTerminator: return "chunk data not followed by CRLF"
        case .bodyTooLarge: return "request body too large"
        case .tlsHandshake: return "TLS handshake on a plain HTTP port"
        case .http2Preface: return "HTTP/2 preface on an HTTP/1.1 port"
        }
    }
}
