package nodeparts

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// DNS answers A queries for a fixed set of names inside the suite's
// namespace, on Address:53, which the pods' resolv.conf names. It forwards
// nothing: any other name is NXDOMAIN, so no pod can look up (or reach)
// the outside world through it.
type DNS struct {
	mu      sync.RWMutex
	records map[string]net.IP
	udp     *dns.Server
	tcp     *dns.Server
}

// StartDNS serves records (host name -> IPv4 address) on addr:53.
func StartDNS(addr string, records map[string]string) (*DNS, error) {
	d := &DNS{records: map[string]net.IP{}}
	for name, ip := range records {
		if err := d.Set(name, ip); err != nil {
			return nil, err
		}
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", d.serve)
	listen := net.JoinHostPort(addr, "53")
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("DNS on %s/udp: %w", listen, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("DNS on %s/tcp: %w", listen, err)
	}
	d.udp = &dns.Server{PacketConn: pc, Handler: mux}
	d.tcp = &dns.Server{Listener: ln, Handler: mux}
	go func() { _ = d.udp.ActivateAndServe() }()
	go func() { _ = d.tcp.ActivateAndServe() }()
	return d, nil
}

// Set adds or changes one record.
func (d *DNS) Set(name, ip string) error {
	parsed := net.ParseIP(ip).To4()
	if parsed == nil {
		return fmt.Errorf("DNS record %s: %q is not an IPv4 address", name, ip)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[dns.Fqdn(strings.ToLower(name))] = parsed
	return nil
}

// Close stops both listeners.
func (d *DNS) Close() {
	_ = d.udp.Shutdown()
	_ = d.tcp.Shutdown()
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Rcode = dns.RcodeNameError
	d.mu.RLock()
	for _, q := range req.Question {
		ip, ok := d.records[strings.ToLower(q.Name)]
		if !ok {
			continue
		}
		m.Rcode = dns.RcodeSuccess
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A:   ip,
			})
		}
	}
	d.mu.RUnlock()
	_ = w.WriteMsg(m)
}
