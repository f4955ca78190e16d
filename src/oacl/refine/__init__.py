"""oacl.refine"""
