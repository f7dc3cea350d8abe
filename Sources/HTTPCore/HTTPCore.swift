public enum HTTPCoreVersion { public static let version = "0" }
