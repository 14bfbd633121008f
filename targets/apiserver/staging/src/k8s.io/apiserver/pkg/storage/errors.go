package storage

import (
	"errors"
	"fmt"
)

// Error codes a backend reports; the registry maps them to HTTP statuses.
const (
	ErrCodeKeyNotFound = iota + 1
	ErrCodeKeyExists
	ErrCodeResourceVersionConflicts
	ErrCodeInvalidObj
)

// StorageError is a backend failure tied to one key.
type StorageError struct {
	Code    int
	Key     string
	Message string
}

func (e *StorageError) Error() string {
	return fmt.Sprintf("storage error (code %d) on key %s: %s", e.Code, e.Key, e.Message)
}

func NewKeyNotFoundError(key string) *StorageError {
	return &StorageError{Code: ErrCodeKeyNotFound, Key: key, Message: "key not found"}
}

func NewKeyExistsError(key string) *StorageError {
	return &StorageError{Code: ErrCodeKeyExists, Key: key, Message: "key exists"}
}

func NewResourceVersionConflictsError(key, msg string) *StorageError {
	return &StorageError{Code: ErrCodeResourceVersionConflicts, Key: key, Message: msg}
}

func NewInvalidObjError(key, msg string) *StorageError {
	return &StorageError{Code: ErrCodeInvalidObj, Key: key, Message: msg}
}

func hasCode(err error, code int) bool {
	var se *StorageError
	return errors.As(err, &se) && se.Code == code
}

func IsNotFound(err error) bool { return hasCode(err, ErrCodeKeyNotFound) }
func IsExist(err error) bool    { return hasCode(err, ErrCodeKeyExists) }
func IsConflict(err error) bool { return hasCode(err, ErrCodeResourceVersionConflicts) }
func IsInvalidObj(err error) bool {
	return hasCode(err, ErrCodeInvalidObj)
}
