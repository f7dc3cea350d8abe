#if canImport(Glibc)
import Glibc
#endif
import Testing

/// DarterTestSupport's ChildProcess, which every launcher in the end-to-end tests is built on.
@Suite("Test support: child processes (spawn, environment, directory, exit, stop)")
struct ChildProcessTests {
    @Test("runProcess captures stdout and stderr apart, with the environment and working directory asked for")
    func environmentAndDirectory() async throws {
        let dir = try TempDirectory("child")
        let r = try await runProcess("/bin/sh", ["-c", "echo \"$DARTER_CHILD_TEST\"; pwd; echo oops >&2; exit 3"], scratch: dir.path,
                                     environment: ["DARTER_CHILD_TEST": "hello"], directory: dir.path)
        #expect(r.exitCode == 3)
        #expect(r.stdoutText == "hello\n\(dir.path)\n")
        #expect(r.stderr == "oops\n")
    }

    @Test("exit codes: 128 + the signal for a killed child; stop reports the exit, and nil for a child that ignores the signal")
    func exitAndStop() async throws {
        let dir = try TempDirectory("child")
        let sleeper = try ChildProcess("/bin/sleep", ["30"], logPath: dir.file("sleep.log"))
        #expect(sleeper.isRunning)
        #expect(await sleeper.stop() == 128 + SIGTERM)
        #expect(!sleeper.isRunning && sleeper.exitCode == 128 + SIGTERM)

        let stubborn = try ChildProcess("/bin/sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"], logPath: dir.file("trap.log"))
        try await stubborn.waitForLog("ready", timeout: 10)
        #expect(await stubborn.stop(timeout: 0.3) == nil, "a child ignoring SIGTERM is not reported as stopped")
        #expect(stubborn.exitCode == 128 + SIGKILL, "then it is killed")

        await #expect(throws: TestError.self) {
            _ = try await runProcess("/bin/sleep", ["30"], scratch: dir.path, timeout: 0.3)
        }
    }

    @Test("waitForLog returns the capture, and fails at once when the child exits without printing it")
    func waitForLog() async throws {
        let dir = try TempDirectory("child")
        let talker = try ChildProcess("/bin/sh", ["-c", "echo 'listening on 127.0.0.1:4711'; exec sleep 30"], logPath: dir.file("talk.log"))
        #expect(try await talker.waitForLog(#"listening on 127\.0\.0\.1:(\d+)"#, timeout: 10) == "4711")
        let quitter = try ChildProcess("/bin/sh", ["-c", "echo bye; exit 2"], logPath: dir.file("quit.log"))
        let start = now()
        await #expect(throws: TestError.self) { try await quitter.waitForLog("never printed", timeout: 60) }
        #expect(now() - start < 20, "the exit was noticed, not the 60 s timeout")
        #expect(quitter.exitCode == 2)
    }
}
