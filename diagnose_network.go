package dbmanager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The dns and tcp steps: name resolution and TCP connects with the
// connection configuration's own LookupFunc and DialFunc, the functions
// pgconn uses.

// netAddr is one address pgconn would dial.
type netAddr struct{ network, address string }

// host is the address without the port (the step's target has it).
func (a netAddr) host() string {
	if h, _, err := net.SplitHostPort(a.address); err == nil {
		return h
	}
	return a.address
}

// checkDNS is the dns step: every address of the endpoint's host.
func (d *diagnosis) checkDNS(ctx context.Context, s *Step, t *diagTarget, cc *pgx.ConnConfig, ep endpoint) []netAddr {
	if ep.unixSocket() {
		network, address := pgconn.NetworkAddress(ep.host, ep.port)
		s.found("Unix socket " + address + ": no name to resolve")
		return []netAddr{{network, address}}
	}
	if ip := net.ParseIP(ep.host); ip != nil {
		s.found("IP address " + ep.host + ": no name to resolve")
		network, address := pgconn.NetworkAddress(ep.host, ep.port)
		return []netAddr{{network, address}}
	}
	start := time.Now()
	ips, err := cc.LookupFunc(ctx, ep.host)
	took := time.Since(start)
	if err != nil {
		detail := fmt.Sprintf("%s does not resolve: %s", ep.host, errorText(err))
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			s.fail(detail, "check the host name ("+t.hostSetting()+"); an RDS endpoint looks like NAME.ID.REGION.rds.amazonaws.com, and a private hosted zone resolves only inside its VPC")
		case isContextError(err) || (errors.As(err, &de) && de.IsTimeout):
			s.fail(fmt.Sprintf("no DNS answer for %s within %s", ep.host, ms(took)), "check this host's DNS resolver (/etc/resolv.conf; in a VPC, enableDnsSupport and the Route 53 resolver)")
		default:
			s.fail(detail, "check the host name ("+t.hostSetting()+") and this host's DNS resolver")
		}
		return nil
	}
	var addrs []netAddr
	var shown []string
	for _, ip := range ips {
		host, port := ip, ep.port
		if h, p, err := net.SplitHostPort(ip); err == nil { // a LookupFunc may return host:port
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				host, port = h, uint16(n)
			}
		}
		network, address := pgconn.NetworkAddress(host, port)
		addrs = append(addrs, netAddr{network, address})
		shown = append(shown, host)
	}
	if len(addrs) == 0 {
		s.fail(ep.host+" resolves to no address", "check the DNS records of "+ep.host)
		return nil
	}
	s.found(fmt.Sprintf("%s resolves to %s in %s", ep.host, strings.Join(shown, ", "), ms(took)))
	return addrs
}

// checkTCP is the tcp step: a TCP connect to every address, each timed.
// It returns the first address that answered.
func (d *diagnosis) checkTCP(ctx context.Context, s *Step, t *diagTarget, cc *pgx.ConnConfig, addrs []netAddr) netAddr {
	var reached netAddr
	var lines []string
	var firstErr error
	var failedAddr string
	for i, a := range addrs {
		// Each address gets an equal share of what is left of the step.
		actx := ctx
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/time.Duration(len(addrs)-i)))
			defer cancel()
		}
		start := time.Now()
		conn, err := cc.DialFunc(actx, a.network, a.address)
		took := time.Since(start)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = ctx.Err()
			}
			lines = append(lines, fmt.Sprintf("%s %s after %s", a.host(), tcpFailure(err), ms(took)))
			if firstErr == nil {
				firstErr, failedAddr = err, a.address
			}
			continue
		}
		_ = conn.Close()
		lines = append(lines, fmt.Sprintf("%s connected in %s", a.host(), ms(took)))
		if reached.address == "" {
			reached = a
		}
	}
	detail := strings.Join(lines, "; ")
	switch {
	case firstErr == nil:
		s.found(detail)
	case reached.address != "":
		s.warn(detail, "pgx tries the addresses in order and waits on each that fails: "+tcpFix(firstErr, failedAddr, t.portSetting()))
	default:
		s.fail(detail, tcpFix(firstErr, failedAddr, t.portSetting()))
	}
	return reached
}

// tcpFailure names a failed connect in a few words.
func tcpFailure(err error) string {
	switch classify(err) {
	case ReasonRefused:
		return "refused"
	case ReasonTimeout:
		return "timed out"
	case ReasonCanceled:
		return "cancelled"
	}
	return "failed (" + errorText(err) + ")"
}

// tcpFix is the fix for a failed connect to address, whose port comes
// from portSetting (see diagTarget.portSetting).
func tcpFix(err error, address, portSetting string) string {
	switch classify(err) {
	case ReasonRefused:
		return "nothing listens on " + address + ": check the port (" + portSetting + "; PostgreSQL and RDS default to 5432) and that the server is running and listens on this address (listen_addresses)"
	case ReasonTimeout:
		fix := "packets to " + address + " are dropped: check that the database's security group allows inbound TCP on the port from this host (or its security group), the network ACLs and route tables of both subnets, and any firewall on the way"
		if private(address) {
			fix += "; this is a private address: it is reachable only from inside the VPC or over peering, a VPN or Direct Connect"
		}
		return fix
	case ReasonCanceled:
		return "the diagnosis was cancelled: run it again"
	}
	if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return "this host has no route to " + address + ": check its routes and the VPC's route tables"
	}
	return "check the network between this host and " + address
}

// private reports whether a host:port is a private, loopback or link-local
// address.
func private(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && (ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast())
}

// closeConn closes a diagnosis connection without waiting long.
func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
