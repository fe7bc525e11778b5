// Command client is a sessiond client in Go (grpc-go): one session's life, and one refusal
// decoded.
//
// It waits until the server reports SERVING, issues a session, validates it, lists it, revokes
// it, validates it again (REVOKED), and reads the google.rpc.ErrorInfo of an INVALID_ARGUMENT.
// It prints one line per check and exits 1 at the first mismatch.
//
//	SESSIOND_ADDR=127.0.0.1:50051 go run .
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sessiondv1 "sessiond.dev/examples/clients/go/gen/sessiond/v1"
)

const (
	service = "sessiond.v1.SessionService"
	user    = "example-go"
	// The calls after the health check are bounded together, and so is the wait for SERVING.
	callTimeout  = 10 * time.Second
	readyTimeout = 30 * time.Second
)

// checkError is a mismatch between what the server answered and what the contract says.
type checkError struct{ msg string }

func (e *checkError) Error() string { return e.msg }

func check(name string, ok bool, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	if !ok {
		return &checkError{name + ": " + detail}
	}
	fmt.Printf("ok   %s: %s\n", name, detail)
	return nil
}

// waitServing polls grpc.health.v1 until SERVING or the deadline; the server starts
// NOT_SERVING until its store answers.
func waitServing(ctx context.Context, conn *grpc.ClientConn) string {
	health := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	last := "no answer"
	for {
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
		switch {
		case err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			return "SERVING"
		case err == nil:
			last = res.GetStatus().String()
		default:
			last = status.Code(err).String()
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func run(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+callTimeout)
	defer cancel()
	health := waitServing(ctx, conn)
	if err := check("health", health == "SERVING", "%s is %s", service, health); err != nil {
		return err
	}
	client := sessiondv1.NewSessionServiceClient(conn)
	c, done := context.WithTimeout(ctx, callTimeout)
	defer done()
	issued, err := client.Issue(c, &sessiondv1.IssueRequest{
		UserId: user,
		Client: &sessiondv1.ClientInfo{Ip: "127.0.0.1", UserAgent: "sessiond-example-go"},
	})
	if err != nil {
		return err
	}
	sessionID := issued.GetSession().GetSessionId()
	token := issued.GetTokens().GetAccessToken()
	if err := check("issue", sessionID != "" && token != "", "session %s for %s", sessionID, user); err != nil {
		return err
	}

	v, err := client.Validate(c, &sessiondv1.ValidateRequest{AccessToken: token})
	if err != nil {
		return err
	}
	if err := check("validate", v.GetValid() && v.GetSession().GetSessionId() == sessionID,
		"valid=%t user=%s", v.GetValid(), v.GetSession().GetUserId()); err != nil {
		return err
	}

	listed, err := client.List(c, &sessiondv1.ListRequest{AccessToken: token})
	if err != nil {
		return err
	}
	mine, current := 0, false
	for _, s := range listed.GetSessions() {
		if s.GetSessionId() == sessionID {
			mine++
			current = s.GetCurrent()
		}
	}
	if err := check("list", mine == 1 && current,
		"%d session(s), ours current=%t", len(listed.GetSessions()), current); err != nil {
		return err
	}

	r, err := client.Revoke(c, &sessiondv1.RevokeRequest{AccessToken: token, SessionId: sessionID})
	if err != nil {
		return err
	}
	if err := check("revoke", r.GetWasCurrent(), "was_current=%t", r.GetWasCurrent()); err != nil {
		return err
	}

	v, err = client.Validate(c, &sessiondv1.ValidateRequest{AccessToken: token})
	if err != nil {
		return err
	}
	if err := check("validate after revoke",
		!v.GetValid() && v.GetReason() == sessiondv1.InvalidReason_INVALID_REASON_REVOKED,
		"valid=%t reason=%s", v.GetValid(), v.GetReason()); err != nil {
		return err
	}

	_, err = client.Issue(c, &sessiondv1.IssueRequest{UserId: ""})
	if err == nil {
		return &checkError{"invalid argument: Issue with an empty user_id succeeded"}
	}
	st := status.Convert(err)
	if err := check("invalid argument", st.Code() == codes.InvalidArgument, "code=%s", st.Code()); err != nil {
		return err
	}
	var infos []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			infos = append(infos, info)
		}
	}
	if err := check("error info", len(infos) == 1,
		"%d google.rpc.ErrorInfo in the status details", len(infos)); err != nil {
		return err
	}
	info := infos[0]
	return check("error info fields",
		info.GetReason() == "INVALID_ARGUMENT" && info.GetDomain() == "sessiond" &&
			info.GetMetadata()["field"] == "user_id",
		"reason=%s domain=%s field=%s", info.GetReason(), info.GetDomain(), info.GetMetadata()["field"])
}

func main() {
	addr := os.Getenv("SESSIOND_ADDR")
	if addr == "" {
		addr = "127.0.0.1:50051"
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Printf("FAIL connect: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	if err := run(conn); err != nil {
		var mismatch *checkError
		if errors.As(err, &mismatch) {
			fmt.Printf("FAIL %s\n", mismatch.msg)
		} else {
			fmt.Printf("FAIL unexpected rpc error: %v\n", err)
		}
		conn.Close()
		os.Exit(1)
	}
}
