package main

func (h *harness) startup() error               { return nil }
func (h *harness) fleet() error                 { return nil }
func (h *harness) faultClock(s *section) error  { return nil }
func (h *harness) faultSensor(s *section) error { return nil }
