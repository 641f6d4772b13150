package main

func (h *harness) startup() error { return nil }
func (h *harness) fleet() error   { return nil }
func (h *harness) faults() error  { return nil }
