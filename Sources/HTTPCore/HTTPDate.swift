/// HTTP-date (RFC 9110 §5.6.7) as whole seconds since the Unix epoch, without Foundation.
public enum HTTPDate: Sendable {
    private static let dayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Formats as IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. Pure: the caller supplies the time.
    public static func format(epochSeconds: Int64) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(29)
        append(epochSeconds: epochSeconds, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the IMF-fixdate bytes (29 of them for years 0...9999).
    public static func append(epochSeconds: Int64, to out: inout [UInt8]) {
        let days = floorDiv(epochSeconds, 86_400)
        let secondsOfDay = Int(epochSeconds - days * 86_400)
        let (year, month, day) = civil(fromDays: days)
        let weekday = Int(((days % 7) + 7 + 4) % 7)  // 1970-01-01 was a Thursday
        out.append(contentsOf: dayNames[weekday].utf8)
        out.append(contentsOf: ", ".utf8)
        appendTwoDigits(day, &out)
        out.append(asciiSpace)
        out.append(contentsOf: monthNames[month - 1].utf8)
        out.append(asciiSpace)
        let y = max(0, min(9999, Int(year)))
        appendTwoDigits(y / 100, &out)
        appendTwoDigits(y % 100, &out)
        out.append(asciiSpace)
        appendTwoDigits(secondsOfDay / 3600, &out)
        out.append(asciiColon)
        appendTwoDigits(secondsOfDay / 60 % 60, &out)
        out.append(asciiColon)
        appendTwoDigits(secondsOfDay % 60, &out)
        out.append(contentsOf: " GMT".utf8)
    }

    /// Parses any of the three formats a recipient must accept: IMF-fixdate,
    /// obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
    /// Returns nil for anything else, including out-of-range fields.
    public static func parse(_ text: some StringProtocol) -> Int64? {
        let b = Array(text.utf8)
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if b.count == 29, b[3] == asciiComma, b[4] == asciiSpace, b[7] == asciiSpace, b[11] == asciiSpace,
           b[16] == asciiSpace, b[25...].elementsEqual(" GMT".utf8), dayIndex(b[0..<3]) != nil,
           let day = digits(b[5..<7]), let month = monthIndex(b[8..<11]), let year = digits(b[12..<16]),
           let time = clock(b[17..<25]) {
            return epoch(year: year, month: month, day: day, time: time)
        }
        // asctime: "Sun Nov  6 08:49:37 1994"
        if b.count == 24, b[3] == asciiSpace, b[7] == asciiSpace, b[10] == asciiSpace, b[19] == asciiSpace,
           dayIndex(b[0..<3]) != nil, let month = monthIndex(b[4..<7]),
           let day = b[8] == asciiSpace ? digits(b[9..<10]) : digits(b[8..<10]),
           let time = clock(b[11..<19]), let year = digits(b[20..<24]) {
            return epoch(year: year, month: month, day: day, time: time)
        }
        // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
        if let comma = b.firstIndex(of: asciiComma), comma >= 6, comma <= 9,
           b.count == comma + 24, b[comma + 1] == asciiSpace, b[comma + 4] == UInt8(ascii: "-"),
           b[comma + 8] == UInt8(ascii: "-"), b[comma + 11] == asciiSpace,
           b[(comma + 20)...].elementsEqual(" GMT".utf8),
           let day = digits(b[(comma + 2)..<(comma + 4)]), let month = monthIndex(b[(comma + 5)..<(comma + 8)]),
           let yy = digits(b[(comma + 9)..<(comma + 11)]), let time = clock(b[(comma + 12)..<(comma + 20)]) {
            // A fixed pivot for RFC 850's two-digit years: 70-99 are 19xx, 00-69 are 20xx.
            let year = yy >= 70 ? 1900 + yy : 2000 + yy
            return epoch(year: year, month: month, day: day, time: time)
        }
        return nil
    }

    // MARK: - Calendar arithmetic (proleptic Gregorian, H. Hinnant's algorithms)

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    private static func civil(fromDays z0: Int64) -> (Int64, Int, Int) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func days(year y0: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? y0 - 1 : y0)
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func epoch(year: Int, month: Int, day: Int, time: Int) -> Int64? {
        let monthDays = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let maxDay = month == 2 && leap ? 29 : monthDays[month - 1]
        guard day >= 1, day <= maxDay else { return nil }
        return days(year: year, month: month, day: day) * 86_400 + Int64(time)
    }

    private static func appendTwoDigits(_ n: Int, _ out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: n / 10 % 10) &+ 48)
        out.append(UInt8(truncatingIfNeeded: n % 10) &+ 48)
    }

    private static func digits(_ b: ArraySlice<UInt8>) -> Int? {
        var n = 0
        for d in b {
            guard isDigit(d) else { return nil }
            n = n * 10 + Int(d - 48)
        }
        return n
    }

    /// "HH:MM:SS" as seconds of the day (a leap second 60 is accepted and folded).
    private static func clock(_ b: ArraySlice<UInt8>) -> Int? {
        let s = b.startIndex
        guard b[s + 2] == asciiColon, b[s + 5] == asciiColon,
              let h = digits(b[s..<(s + 2)]), let m = digits(b[(s + 3)..<(s + 5)]),
              let sec = digits(b[(s + 6)..<(s + 8)]), h < 24, m < 60, sec <= 60 else { return nil }
        return h * 3600 + m * 60 + min(sec, 59)
    }

    private static func monthIndex(_ b: ArraySlice<UInt8>) -> Int? {
        monthNames.firstIndex { $0.utf8.elementsEqual(b) }.map { $0 + 1 }
    }

    private static func dayIndex(_ b: ArraySlice<UInt8>) -> Int? {
        dayNames.firstIndex { $0.utf8.elementsEqual(b) }
    }
}
