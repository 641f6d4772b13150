module gatewayd

go 1.26
