package bot

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Code classifies an error so that each transport can map it once: to an HTTP
// status at the endpoint, to an error invoke response or an outcome card in Teams.
type Code string

// Error codes. Adapters (graph/, state/, the Bot Framework client) translate
// foreign errors into these at their boundary.
const (
	CodeInvalid     Code = "invalid"
	CodeNotFound    Code = "not_found"
	CodeForbidden   Code = "forbidden"
	CodeConflict    Code = "conflict"
	CodeUnavailable Code = "unavailable"
	CodeInternal    Code = "internal"
)

// Error is the one error type of the domain. Message describes the failure
// (Errorf folds the cause's text into it); Err keeps the cause for errors.Is/As.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	switch {
	case e.Message != "" && e.Err != nil && !strings.Contains(e.Message, e.Err.Error()):
		return e.Message + ": " + e.Err.Error()
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	}
	return string(e.Code)
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same code and no message of
// its own, so that errors.Is(err, bot.ErrNotFound) works for any not_found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrForbidden   = &Error{Code: CodeForbidden}
	ErrConflict    = &Error{Code: CodeConflict}
	ErrUnavailable = &Error{Code: CodeUnavailable}
)

// Errorf returns an *Error with the given code. A %w verb keeps the cause.
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), Err: errors.Unwrap(err)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// httpStatuses is the one table between error codes and HTTP statuses, for
// every transport: the endpoint's answer to a failed activity, the
// statusCode of an error invoke response, and the connector's answers read
// back as codes (status or one of its aliases).
var httpStatuses = []struct {
	code    Code
	status  int
	aliases []int
}{
	{CodeInvalid, http.StatusBadRequest, nil},
	{CodeForbidden, http.StatusForbidden, []int{http.StatusUnauthorized}},
	{CodeNotFound, http.StatusNotFound, []int{http.StatusGone}},
	{CodeConflict, http.StatusConflict, []int{http.StatusPreconditionFailed}},
	{CodeUnavailable, http.StatusServiceUnavailable, []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout}},
	{CodeInternal, http.StatusInternalServerError, nil},
}

// HTTPStatus is the HTTP status that answers an error of this code: 5xx for
// what may pass on a retry, 4xx for what will not. Unknown codes are 500.
func (c Code) HTTPStatus() int {
	for _, s := range httpStatuses {
		if s.code == c {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// CodeOfHTTPStatus classifies an HTTP error status; CodeInternal for any
// status the table does not name.
func CodeOfHTTPStatus(status int) Code {
	for _, s := range httpStatuses {
		if s.status == status {
			return s.code
		}
		for _, a := range s.aliases {
			if a == status {
				return s.code
			}
		}
	}
	return CodeInternal
}
