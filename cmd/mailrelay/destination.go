package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
)

const destinationUsage = `usage: mailrelay destination list
       mailrelay destination show ADDR
       mailrelay destination unpause ADDR

Shows the destination addresses SES bounces paused, through a running
relay's admin API: RELAY_ADMIN_URL (default http://127.0.0.1:8082), with
RELAY_ADMIN_TOKEN sent as a bearer token. list prints the paused ones as a
JSON array; show prints one as a JSON object ("paused": false when it is
not); unpause ends a pause at once (an error when there is none). Mail held
for a paused destination is dead-lettered (reason destination_paused):
redrive it with 'mailrelay deadletter redrive' after the unpause.

`

var destinationCommand = adminCommand{
	noun: "destination", usage: destinationUsage, target: "destination address",
	verbs: []string{"list", "show", "unpause"}, untargeted: []string{"list"},
}

func destination(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	call, err := destinationCommand.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	path := "/destinations/" + url.PathEscape(call.target)
	switch call.verb {
	case "list":
		return call.do(ctx, stdout, http.MethodGet, "/destinations", nil)
	case "show":
		return call.do(ctx, stdout, http.MethodGet, path, nil)
	default: // unpause
		return call.do(ctx, stdout, http.MethodPost, path+"/unpause", nil)
	}
}
