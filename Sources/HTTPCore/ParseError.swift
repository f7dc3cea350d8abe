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

/// Why a response could not be parsed. After any error the connection must be closed: the
/// parser no longer knows where the next response starts.
public enum HTTPResponseParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status line is longer than ``HTTPResponseParser/Limits/maxStatusLineLength``.
    case statusLineTooLong
    /// The status line is not `HTTP/DIGIT.DIGIT SP 3DIGIT [SP reason]`, or the code is below 100.
    case invalidStatusLine
    /// A well-formed version other than HTTP/1.0 or HTTP/1.1.
    case unsupportedVersion
    /// The header block (or the trailer section) is longer than ``HTTPResponseParser/Limits/maxHeaderBlockLength``.
    case headerBlockTooLarge
    /// More header (or trailer) fields than ``HTTPResponseParser/Limits/maxHeaderCount``.
    case tooManyHeaders
    /// A field line without a token name and colon, with a control byte in its value, or a
    /// continuation line with no field before it.
    case invalidHeaderField
    /// A CR not followed by LF.
    case invalidLineEnding
    /// A Content-Length that is not 1*DIGIT or overflows.
    case invalidContentLength
    /// Several Content-Length values that differ.
    case conflictingContentLength
    /// A chunk-size line that is not HEX digits with optional extensions.
    case invalidChunkSize
    /// A chunk-size line longer than ``HTTPResponseParser/Limits/maxChunkLineLength``.
    case chunkLineTooLong
    /// Chunk data not followed by a line end.
    case invalidChunkTerminator
    /// The body is larger than ``HTTPResponseParser/Limits/maxBodyLength`` (or than an `Int64` counts).
    case bodyTooLarge
    /// The server closed the connection in the middle of a response.
    case truncated
    /// A 101: we never ask to switch protocols, so what follows is not HTTP/1.1.
    case switchingProtocols

    /// A one-line reason, for logs and errors a client reports.
    public var description: String {
        switch self {
        case .statusLineTooLong: return "status line too long"
        case .invalidStatusLine: return "malformed status line"
        case .unsupportedVersion: return "HTTP version not supported"
        case .headerBlockTooLarge: return "header block too large"
        case .tooManyHeaders: return "too many header fields"
        case .invalidHeaderField: return "malformed header field"
        case .invalidLineEnding: return "CR not followed by LF"
        case .invalidContentLength: return "invalid Content-Length"
        case .conflictingContentLength: return "conflicting Content-Length values"
        case .invalidChunkSize: return "malformed chunk size line"
        case .chunkLineTooLong: return "chunk size line too long"
        case .invalidChunkTerminator: return "chunk data not followed by a line end"
        case .bodyTooLarge: return "response body too large"
        case .truncated: return "connection closed in the middle of a response"
        case .switchingProtocols: return "unexpected 101 Switching Protocols"
        }
    }
}
