// Command vulngate reads `govulncheck -format json` on standard input,
// prints the findings by level and exits 1 if a vulnerability is reached at
// the symbol level without being accepted in the table of the file named by
// -accepted (deploy/vulnerabilities.md); 2 if the input is not a scan.
//
//	govulncheck -format json ./... | go run ./cmd/vulngate -accepted vulnerabilities.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/mailrelay/mailrelay/deploy/vulngate"
)

func main() {
	accepted := flag.String("accepted", "vulnerabilities.md", "Markdown file whose table lists the accepted vulnerabilities")
	flag.Parse()
	f, err := os.Open(*accepted)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	acc, err := vulngate.ParseAccepted(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	scan, err := vulngate.Parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	res := vulngate.Decide(scan, acc)
	res.Report(os.Stdout, scan.Config)
	if len(res.Failed) > 0 {
		fmt.Printf("FAIL: %d reachable vulnerabilities\n", len(res.Failed))
		os.Exit(1)
	}
	fmt.Println("ok: no reachable vulnerability outside deploy/vulnerabilities.md")
}
