// Package chaos holds crash-safety tests of the real mailrelay binary: the
// relay runs as a subprocess against in-process stand-ins for S3, SES and
// SNS's signing, is killed with SIGKILL at random moments while signed
// notifications are posted, and is restarted on the same spool. The tests
// prove that every notification ever acknowledged with 200 is forwarded
// exactly once. Run with plain `go test ./chaos` (skipped with -short).
package chaos
